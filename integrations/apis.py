"""REST API v1 for integrations: the catalog, specs and custom spec upload, installations
(property values; secrets write-only), connection test, OAuth connect, user mapping, SMS
numbers of an SMS installation, and the delivery log.

Views are thin: reads go through `integrations.selectors` (and the tenant selectors), so a
row of another tenant is a 404; writes go through the services. Input and output serializers
are kept apart; errors are rendered by `portal.api.exceptions.api_exception_handler` as
``{"message": ..., "errors": {field: [...]}}`` — a spec's problems are keyed by JSON pointer,
property problems by property name.

A secret property value is accepted in `secret_properties` on create and update and never
returned: responses only name the secret properties that have a stored value.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, PermissionDenied
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations import selectors, services
from integrations.delivery_log import STATUS_CHOICES, delivery_log_get, delivery_log_list
from integrations.engine.errors import IntegrationError, SpecError
from integrations.engine.spec import Spec
from integrations.models import (
    CrmUser,
    DeliveryLogEntry,
    Installation,
    IntegrationSpec,
    SpecVersion,
    UserFetch,
)
from integrations.sms_numbers import sms_number_bind, sms_number_list_bound, sms_webhook_url
from integrations.user_mapping import (
    crm_user_list,
    crm_users_fetch_get,
    crm_users_fetch_latest,
    crm_users_fetch_start,
    user_mapping_reset,
    user_mapping_row,
    user_mapping_rows,
    user_mapping_set,
)
from portal.api.pagination import PagePagination, paginated_response
from tenants import selectors as tenant_selectors
from tenants.apis import (
    AUTH_ERRORS,
    ORGANIZATION_ID,
    PBX_USER_ID,
    READ_ERRORS,
    SMS_NUMBER_ID,
    WRITE_ERRORS,
    ErrorOutputSerializer,
)
from tenants.models import PbxUser, SmsNumber

# --- Errors --------------------------------------------------------------------------------


class ThirdPartyFailed(APIException):
    """The third party refused or failed a call this request needed (Install, the credential
    check, Uninstall): the message says what happened and what to do."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "The third party refused the request."
    default_code = "third_party_failed"


def _spec_problems(exc: SpecError) -> serializers.ValidationError:
    """A SpecError as a validation error keyed by JSON pointer (every problem kept)."""
    errors: dict[str, list[str]] = {}
    for problem in exc.problems:
        errors.setdefault(problem.pointer or "/", []).append(problem.message)
    return serializers.ValidationError(errors)


def _spec_error_response(exc: SpecError) -> Response:
    errors: dict[str, list[str]] = {}
    for problem in exc.problems:
        errors.setdefault(problem.pointer or "/", []).append(problem.message)
    count = len(exc.problems)
    if any(p.pointer for p in exc.problems) or not exc.problems:
        message = f"The spec has {count} problem{'s' if count != 1 else ''}."
    else:
        message = exc.problems[0].message
    return Response({"message": message, "errors": errors}, status=status.HTTP_400_BAD_REQUEST)


THIRD_PARTY_ERROR = OpenApiResponse(
    ErrorOutputSerializer,
    description="Invalid input, or the third party refused the configuration (the message "
    "says what to fix).",
)
INSTALLATION_WRITE_ERRORS = {**WRITE_ERRORS, 400: THIRD_PARTY_ERROR}

INSTALLATION_ID = OpenApiParameter(
    "installation_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Installation id."
)
SPEC_ID = OpenApiParameter(
    "spec_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Spec id (not its `id` key)."
)
FETCH_ID = OpenApiParameter(
    "fetch_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="CRM user fetch id."
)
ENTRY_ID = OpenApiParameter(
    "entry_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Delivery log entry id."
)


def _methods_of(spec: Spec) -> list[dict[str, Any]]:
    rows = []
    for name, method in spec.methods.items():
        steps = method if isinstance(method, list) else [method]
        first = steps[0] if steps else {}
        rows.append(
            {
                "name": name,
                "http_method": first.get("request_method", "GET"),
                "path": first.get("request_path") or first.get("request_url") or "",
                "steps": len(steps),
            }
        )
    return rows


def _properties_of(spec: Spec) -> list[dict[str, Any]]:
    return [
        {
            "name": prop.name,
            "type": "secret" if services.property_is_secret(prop) else prop.type,
            "required": prop.required,
            "default": None if services.property_is_secret(prop) else prop.default,
            "help": prop.help,
            "choices": [str(c) for c in prop.choices],
        }
        for prop in spec.properties
    ]


# --- Catalog and specs ---------------------------------------------------------------------


class MethodOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    http_method = serializers.CharField()
    path = serializers.CharField(help_text="`request_path` or `request_url` of the first step.")
    steps = serializers.IntegerField()


class PropertyOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.CharField(help_text="string, url, secret, number, boolean or choice.")
    required = serializers.BooleanField()
    default = serializers.JSONField(allow_null=True)
    help = serializers.CharField()
    choices = serializers.ListField(child=serializers.CharField())


class CapabilityOutputSerializer(serializers.Serializer):
    key = serializers.CharField()
    title = serializers.CharField()
    core = serializers.BooleanField()
    status = serializers.CharField(help_text="present, partial or missing.")
    methods = serializers.ListField(child=serializers.CharField())
    note = serializers.CharField()


class ReadinessOutputSerializer(serializers.Serializer):
    score = serializers.IntegerField(help_text="0-100.")
    core_ready = serializers.BooleanField()
    capabilities = CapabilityOutputSerializer(many=True)


class CatalogEntryOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="spec.pk", help_text="Spec id.")
    key = serializers.CharField(source="spec.spec_id", help_text="The spec's `id`.")
    name = serializers.CharField(source="spec.name")
    spec_class = serializers.CharField(source="spec.spec_class", help_text="crm or sms.")
    builtin = serializers.BooleanField(source="spec.is_builtin")
    logo_url = serializers.CharField()
    description = serializers.CharField()
    version = serializers.IntegerField(source="version.pk", help_text="Latest approved version.")
    version_number = serializers.IntegerField(source="version.number")
    installed_count = serializers.IntegerField()
    readiness = serializers.SerializerMethodField()
    methods = serializers.SerializerMethodField()
    properties = serializers.SerializerMethodField()

    @extend_schema_field(ReadinessOutputSerializer(allow_null=True))
    def get_readiness(self, entry: Any) -> dict[str, Any] | None:
        return entry.readiness.to_dict() if entry.readiness else None

    @extend_schema_field(MethodOutputSerializer(many=True))
    def get_methods(self, entry: Any) -> list[dict[str, Any]]:
        return _methods_of(entry.loaded)

    @extend_schema_field(PropertyOutputSerializer(many=True))
    def get_properties(self, entry: Any) -> list[dict[str, Any]]:
        return _properties_of(entry.loaded)


class SpecVersionOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = SpecVersion
        fields = ("id", "spec", "number", "status", "sha256", "review_note", "created_at")
        read_only_fields = fields


class SpecOutputSerializer(serializers.ModelSerializer):
    key = serializers.CharField(source="spec_id", help_text="The spec's `id`.")
    builtin = serializers.BooleanField(source="is_builtin")
    versions = SpecVersionOutputSerializer(many=True)

    class Meta:
        model = IntegrationSpec
        fields = ("id", "key", "name", "spec_class", "account", "builtin", "logo", "versions")
        read_only_fields = fields


class SpecDetailOutputSerializer(SpecOutputSerializer):
    document = serializers.SerializerMethodField()
    readiness = serializers.SerializerMethodField()
    methods = serializers.SerializerMethodField()
    properties = serializers.SerializerMethodField()

    class Meta(SpecOutputSerializer.Meta):
        fields = (
            *SpecOutputSerializer.Meta.fields,
            "document",
            "readiness",
            "methods",
            "properties",
        )
        read_only_fields = fields

    def _latest(self, spec: IntegrationSpec) -> SpecVersion | None:
        versions = list(self.context.get("versions") or [])
        approved = [v for v in versions if v.status == SpecVersion.Status.APPROVED]
        return (approved or versions or [None])[0]

    def _loaded(self, spec: IntegrationSpec) -> Spec | None:
        version = self._latest(spec)
        if version is None:
            return None
        try:
            return selectors.spec_version_load(version)
        except SpecError:
            return None

    @extend_schema_field(
        serializers.JSONField(
            help_text="The latest approved version's document (or the latest uploaded one)."
        )
    )
    def get_document(self, spec: IntegrationSpec) -> Any:
        version = self._latest(spec)
        return version.document if version else None

    @extend_schema_field(ReadinessOutputSerializer(allow_null=True))
    def get_readiness(self, spec: IntegrationSpec) -> dict[str, Any] | None:
        loaded = self._loaded(spec)
        report = selectors.spec_readiness(loaded) if loaded else None
        return report.to_dict() if report else None

    @extend_schema_field(MethodOutputSerializer(many=True))
    def get_methods(self, spec: IntegrationSpec) -> list[dict[str, Any]]:
        loaded = self._loaded(spec)
        return _methods_of(loaded) if loaded else []

    @extend_schema_field(PropertyOutputSerializer(many=True))
    def get_properties(self, spec: IntegrationSpec) -> list[dict[str, Any]]:
        loaded = self._loaded(spec)
        return _properties_of(loaded) if loaded else []


class SpecUploadInputSerializer(serializers.Serializer):
    account = serializers.IntegerField(
        required=False, help_text="Required only when you manage several accounts."
    )
    document = serializers.JSONField(
        required=False, help_text="The spec as a JSON object (or send a `file`)."
    )
    file = serializers.FileField(
        required=False, help_text="The spec as a JSON file (multipart upload)."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("document" in attrs) == ("file" in attrs):
            raise serializers.ValidationError(
                {"document": ["Send the spec as `document` (JSON) or as a `file`, not both."]}
            )
        return attrs


class CatalogApi(APIView):
    pagination_class = PagePagination

    @extend_schema(
        tags=["catalog"],
        operation_id="organizations_catalog_list",
        summary="The integrations an organization can enable",
        description="Built-in specs and the approved custom specs of the organization's account, "
        "each with its latest approved version, readiness report, methods and properties.",
        parameters=[ORGANIZATION_ID],
        responses={200: CatalogEntryOutputSerializer(many=True), **READ_ERRORS},
    )
    def get(self, request: Request, org_id: int) -> Response:
        organization = tenant_selectors.organization_get(user=request.user, pk=org_id)
        entries = selectors.catalog_for_organization(user=request.user, organization=organization)
        return paginated_response(
            request=request,
            view=self,
            queryset=entries,
            serializer_class=CatalogEntryOutputSerializer,
        )


class SpecListApi(APIView):
    pagination_class = PagePagination

    @extend_schema(
        tags=["specs"],
        operation_id="specs_list",
        summary="Specs you can see: built-ins and your accounts' custom specs",
        responses={200: SpecOutputSerializer(many=True), **AUTH_ERRORS},
    )
    def get(self, request: Request) -> Response:
        return paginated_response(
            request=request,
            view=self,
            queryset=selectors.spec_list(user=request.user),
            serializer_class=SpecOutputSerializer,
        )


class SpecDetailApi(APIView):
    @extend_schema(
        tags=["specs"],
        operation_id="specs_retrieve",
        summary="A spec with its versions, document, readiness report and methods",
        parameters=[SPEC_ID],
        responses={200: SpecDetailOutputSerializer, **READ_ERRORS},
    )
    def get(self, request: Request, spec_id: int) -> Response:
        spec = selectors.spec_get(user=request.user, pk=spec_id)
        versions = list(selectors.spec_versions_visible(user=request.user, spec=spec))
        serializer = SpecDetailOutputSerializer(
            spec, context={"versions": versions, "request": request}
        )
        data = dict(serializer.data)
        data["versions"] = SpecVersionOutputSerializer(versions, many=True).data
        return Response(data)


class SpecUploadApi(APIView):
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    @extend_schema(
        tags=["specs"],
        operation_id="specs_upload",
        summary="Upload a custom spec (reseller admins); it waits for staff approval",
        description="Send the spec as a JSON `document` or as a multipart `file`. It is "
        "validated at once: every problem is returned under `errors`, keyed by its JSON "
        "pointer (`/API/FindContact/request_path`). A valid spec is stored as *submitted*.",
        request={
            "application/json": SpecUploadInputSerializer,
            "multipart/form-data": SpecUploadInputSerializer,
        },
        responses={201: SpecVersionOutputSerializer, **WRITE_ERRORS},
    )
    def post(self, request: Request) -> Response:
        accounts = tenant_selectors.accounts_managed_by(user=request.user)
        if not accounts.exists():
            raise PermissionDenied("Only reseller admins can upload specs.")
        serializer = SpecUploadInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        account_id = data.get("account")
        if account_id is not None:
            account = accounts.filter(pk=account_id).first()
            if account is None:
                raise serializers.ValidationError(
                    {"account": ["You are not a reseller admin of this account."]}
                )
        elif accounts.count() > 1:
            raise serializers.ValidationError(
                {"account": ["Required: you manage several accounts; say which one."]}
            )
        else:
            account = accounts.get()
        if "file" in data:
            source: Any = data["file"].read()
        else:
            source = data["document"]
            if isinstance(source, str):
                source = source.encode()
        try:
            version = services.spec_upload(user=request.user, account=account, source=source)
        except SpecError as exc:
            return _spec_error_response(exc)
        return Response(SpecVersionOutputSerializer(version).data, status=status.HTTP_201_CREATED)


# --- Installations -------------------------------------------------------------------------


class InstallationOutputSerializer(serializers.ModelSerializer):
    spec = serializers.IntegerField(source="spec_version.spec_id")
    spec_key = serializers.CharField(source="spec_version.spec.spec_id")
    spec_name = serializers.CharField(source="spec_version.spec.name")
    spec_class = serializers.CharField(source="spec_version.spec.spec_class")
    spec_version_number = serializers.IntegerField(source="spec_version.number")
    properties = serializers.JSONField(help_text="Non-secret property values by name.")
    secret_properties_set = serializers.SerializerMethodField()
    connected = serializers.SerializerMethodField()
    sms_webhook_url = serializers.SerializerMethodField()

    class Meta:
        model = Installation
        fields = (
            "id",
            "organization",
            "spec",
            "spec_key",
            "spec_name",
            "spec_class",
            "spec_version",
            "spec_version_number",
            "key",
            "label",
            "status",
            "status_detail",
            "properties",
            "secret_properties_set",
            "connected",
            "connected_as",
            "create_contacts",
            "match_policy",
            "sms_webhook_url",
            "created_at",
            "updated_at",
        )
        read_only_fields = fields

    @extend_schema_field(
        serializers.ListField(
            child=serializers.CharField(),
            help_text="Names of the secret properties that have a stored value (write-only).",
        )
    )
    def get_secret_properties_set(self, installation: Installation) -> list[str]:
        return sorted(k for k, v in (installation.secret_properties or {}).items() if v)

    @extend_schema_field(
        serializers.BooleanField(help_text="OAuth2 / token credentials are stored.")
    )
    def get_connected(self, installation: Installation) -> bool:
        return bool((installation.tokens or {}).get("access_token"))

    @extend_schema_field(
        serializers.CharField(
            allow_null=True, help_text="SMS installations: where the provider posts inbound."
        )
    )
    def get_sms_webhook_url(self, installation: Installation) -> str | None:
        if installation.spec_version.spec.spec_class != IntegrationSpec.SpecClass.SMS:
            return None
        return sms_webhook_url(installation=installation)


class InstallationCreateInputSerializer(serializers.Serializer):
    spec = serializers.IntegerField(
        help_text="Id of a spec of the organization's catalog; its latest approved version "
        "is enabled."
    )
    label = serializers.CharField(max_length=200, allow_blank=True, default="")
    properties = serializers.DictField(
        child=serializers.JSONField(), default=dict, help_text="Property values by name."
    )
    secret_properties = serializers.DictField(
        child=serializers.CharField(allow_blank=True),
        default=dict,
        write_only=True,
        help_text="Secret property values by name. Write-only: never returned.",
    )
    create_contacts = serializers.BooleanField(default=False)
    match_policy = serializers.ChoiceField(choices=Installation.MatchPolicy.choices, required=False)


class InstallationUpdateInputSerializer(serializers.Serializer):
    label = serializers.CharField(max_length=200, allow_blank=True, required=False)
    properties = serializers.DictField(
        child=serializers.JSONField(),
        default=dict,
        help_text="Property values by name. PUT replaces them; PATCH changes the ones given.",
    )
    secret_properties = serializers.DictField(
        child=serializers.CharField(allow_blank=True),
        default=dict,
        write_only=True,
        help_text="Secret values by name; a secret left out or blank keeps the stored one. "
        "Write-only: never returned.",
    )
    create_contacts = serializers.BooleanField(required=False)
    match_policy = serializers.ChoiceField(choices=Installation.MatchPolicy.choices, required=False)


def _installation_write(call: Any) -> Installation:
    """Run a service that may call the third party, turning its failures into API errors."""
    try:
        return call()
    except IntegrationError as exc:
        raise ThirdPartyFailed(exc.message) from exc
    except SpecError as exc:
        raise _spec_problems(exc) from exc


class InstallationListCreateApi(APIView):
    pagination_class = PagePagination

    @extend_schema(
        tags=["installations"],
        operation_id="organizations_installations_list",
        summary="An organization's installed integrations",
        parameters=[ORGANIZATION_ID],
        responses={200: InstallationOutputSerializer(many=True), **READ_ERRORS},
    )
    def get(self, request: Request, org_id: int) -> Response:
        organization = tenant_selectors.organization_get(user=request.user, pk=org_id)
        return paginated_response(
            request=request,
            view=self,
            queryset=selectors.installation_list(user=request.user, organization=organization),
            serializer_class=InstallationOutputSerializer,
        )

    @extend_schema(
        tags=["installations"],
        operation_id="organizations_installations_create",
        summary="Enable an integration for an organization",
        description="Property values are checked against the spec (errors keyed by property "
        "name). For basic/bearer/token specs the spec's Install requests run and the "
        "credentials are verified now; an oauth2 installation starts not connected.",
        parameters=[ORGANIZATION_ID],
        request=InstallationCreateInputSerializer,
        responses={201: InstallationOutputSerializer, **INSTALLATION_WRITE_ERRORS},
    )
    def post(self, request: Request, org_id: int) -> Response:
        organization = tenant_selectors.organization_get(user=request.user, pk=org_id)
        serializer = InstallationCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        try:
            entry = selectors.catalog_entry_get(
                user=request.user, organization=organization, spec_pk=data.pop("spec")
            )
        except Http404 as exc:
            raise serializers.ValidationError(
                {"spec": ["No such integration in this organization's catalog."]}
            ) from exc
        installation = _installation_write(
            lambda: services.installation_create(
                user=request.user,
                organization=organization,
                spec_version=entry.version,
                properties=data["properties"],
                secret_properties=data["secret_properties"],
                label=data["label"],
                create_contacts=data["create_contacts"],
                match_policy=data.get("match_policy"),
            )
        )
        return Response(
            InstallationOutputSerializer(installation).data, status=status.HTTP_201_CREATED
        )


class InstallationDetailApi(APIView):
    @extend_schema(
        tags=["installations"],
        operation_id="installations_retrieve",
        summary="An installation (secret values are never returned)",
        parameters=[INSTALLATION_ID],
        responses={200: InstallationOutputSerializer, **READ_ERRORS},
    )
    def get(self, request: Request, installation_id: int) -> Response:
        installation = selectors.installation_get(user=request.user, pk=installation_id)
        return Response(InstallationOutputSerializer(installation).data)

    def _update(self, request: Request, installation_id: int, *, partial: bool) -> Response:
        installation = selectors.installation_get(user=request.user, pk=installation_id)
        serializer = InstallationUpdateInputSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        properties = dict(data.get("properties") or {})
        if partial:
            properties = {**(installation.properties or {}), **properties}
        updated = _installation_write(
            lambda: services.installation_update(
                installation=installation,
                properties=properties,
                secret_properties=dict(data.get("secret_properties") or {}),
                label=data.get("label"),
                create_contacts=data.get("create_contacts"),
                match_policy=data.get("match_policy"),
            )
        )
        return Response(InstallationOutputSerializer(updated).data)

    @extend_schema(
        tags=["installations"],
        operation_id="installations_replace",
        summary="Replace an installation's property values and options",
        parameters=[INSTALLATION_ID],
        request=InstallationUpdateInputSerializer,
        responses={200: InstallationOutputSerializer, **INSTALLATION_WRITE_ERRORS},
    )
    def put(self, request: Request, installation_id: int) -> Response:
        return self._update(request, installation_id, partial=False)

    @extend_schema(
        tags=["installations"],
        operation_id="installations_partial_update",
        summary="Change some property values or options of an installation",
        parameters=[INSTALLATION_ID],
        request=InstallationUpdateInputSerializer(partial=True),
        responses={200: InstallationOutputSerializer, **INSTALLATION_WRITE_ERRORS},
    )
    def patch(self, request: Request, installation_id: int) -> Response:
        return self._update(request, installation_id, partial=True)

    @extend_schema(
        tags=["installations"],
        operation_id="installations_destroy",
        summary="Disable an integration (runs its Uninstall requests)",
        description="With `force=true` the installation is deleted even when Uninstall fails.",
        parameters=[
            INSTALLATION_ID,
            OpenApiParameter(
                "force",
                OpenApiTypes.BOOL,
                OpenApiParameter.QUERY,
                description="Delete even if the Uninstall requests fail.",
            ),
        ],
        request=None,
        responses={204: None, **READ_ERRORS, 400: THIRD_PARTY_ERROR},
    )
    def delete(self, request: Request, installation_id: int) -> Response:
        installation = selectors.installation_get(user=request.user, pk=installation_id)
        force = request.query_params.get("force", "").lower() in ("1", "true", "yes")
        try:
            services.installation_delete(installation=installation, force=force)
        except IntegrationError as exc:
            raise ThirdPartyFailed(exc.message) from exc
        except SpecError as exc:
            raise _spec_problems(exc) from exc
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Test connection, OAuth connect ---------------------------------------------------------


class ConnectionTestInputSerializer(serializers.Serializer):
    method_name = serializers.ChoiceField(
        choices=[(m, m) for m in services.CONNECTION_TEST_METHODS], default="Users"
    )
    phone = serializers.CharField(
        max_length=32, required=False, help_text="For FindContact: any format; read as E.164."
    )


class AttemptOutputSerializer(serializers.Serializer):
    method = serializers.CharField()
    url = serializers.CharField(help_text="Secrets redacted.")
    status = serializers.IntegerField(allow_null=True)
    duration_ms = serializers.IntegerField()
    attempt = serializers.IntegerField()
    error = serializers.CharField()


class ConnectionTestOutputSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    method_name = serializers.CharField()
    result = serializers.JSONField(
        allow_null=True, help_text="What the method returned (a list for list methods)."
    )
    requests = serializers.ListField(
        child=serializers.DictField(), help_text="The requests sent, secrets redacted."
    )
    attempts = AttemptOutputSerializer(many=True)
    error = serializers.CharField(help_text="The actionable error when `ok` is false.")
    phone = serializers.CharField(allow_null=True)
    phone_used = serializers.CharField(allow_null=True)


class InstallationTestApi(APIView):
    @extend_schema(
        tags=["installations"],
        operation_id="installations_test",
        summary="Test the connection with a harmless method",
        description="Runs `Users`, `GetUserInfo` or `FindContact` (with `phone`) and returns "
        "the mapped result or the error, with the requests sent (secrets redacted). A failed "
        "call is a 200 with `ok: false`.",
        parameters=[INSTALLATION_ID],
        request=ConnectionTestInputSerializer,
        responses={200: ConnectionTestOutputSerializer, **WRITE_ERRORS},
    )
    def post(self, request: Request, installation_id: int) -> Response:
        installation = selectors.installation_get(user=request.user, pk=installation_id)
        serializer = ConnectionTestInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        outcome = services.installation_test(
            installation=installation,
            method_name=serializer.validated_data["method_name"],
            phone=serializer.validated_data.get("phone"),
        )
        return Response(ConnectionTestOutputSerializer(outcome).data)


class OAuthConnectOutputSerializer(serializers.Serializer):
    authorize_url = serializers.CharField(
        help_text="Send the admin's browser here; the CRM redirects back to the portal."
    )


class InstallationOAuthConnectApi(APIView):
    @extend_schema(
        tags=["installations"],
        operation_id="installations_oauth_connect",
        summary="Start OAuth connect: the CRM's authorize URL",
        description="Creates a single-use `state` bound to the installation and to you "
        "(valid 10 minutes). Open the URL in the browser session of the same user.",
        parameters=[INSTALLATION_ID],
        request=None,
        responses={200: OAuthConnectOutputSerializer, **WRITE_ERRORS},
    )
    def post(self, request: Request, installation_id: int) -> Response:
        installation = selectors.installation_get(user=request.user, pk=installation_id)
        try:
            url = services.oauth_connect_start(installation=installation, user=request.user)
        except SpecError as exc:
            raise _spec_problems(exc) from exc
        return Response({"authorize_url": url})


class InstallationOAuthDisconnectApi(APIView):
    @extend_schema(
        tags=["installations"],
        operation_id="installations_oauth_disconnect",
        summary="Disconnect an OAuth installation",
        description="Runs the spec's Uninstall requests and revokes the tokens where the spec "
        "can (best effort: problems are returned in `status_detail`), then wipes the tokens "
        "and marks the installation not connected.",
        parameters=[INSTALLATION_ID],
        request=None,
        responses={200: InstallationOutputSerializer, **WRITE_ERRORS},
    )
    def post(self, request: Request, installation_id: int) -> Response:
        installation = selectors.installation_get(user=request.user, pk=installation_id)
        try:
            services.oauth_disconnect(installation=installation)
        except SpecError as exc:
            raise _spec_problems(exc) from exc
        installation = selectors.installation_get(user=request.user, pk=installation_id)
        return Response(InstallationOutputSerializer(installation).data)


class InstallationUpgradeInputSerializer(serializers.Serializer):
    properties = serializers.DictField(
        child=serializers.JSONField(),
        default=dict,
        help_text="Values of the properties the new version adds (or changes), by name. The "
        "stored values of the properties it keeps are kept.",
    )
    secret_properties = serializers.DictField(
        child=serializers.CharField(allow_blank=True),
        default=dict,
        write_only=True,
        help_text="Secret values by name; a secret left out or blank keeps the stored one. "
        "Write-only: never returned.",
    )


class InstallationUpgradeApi(APIView):
    @extend_schema(
        tags=["installations"],
        operation_id="installations_upgrade",
        summary="Move an installation to the latest approved version of its spec",
        description="Property values are re-validated against the new version (errors keyed "
        "by property name); values of properties it no longer has are dropped. Tokens are "
        "kept; basic/bearer/token credentials are verified again. On failure nothing changes.",
        parameters=[INSTALLATION_ID],
        request=InstallationUpgradeInputSerializer,
        responses={200: InstallationOutputSerializer, **INSTALLATION_WRITE_ERRORS},
    )
    def post(self, request: Request, installation_id: int) -> Response:
        installation = selectors.installation_get(user=request.user, pk=installation_id)
        serializer = InstallationUpgradeInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        target = selectors.installation_upgrade_target(installation)
        if target is None:
            raise serializers.ValidationError(
                f"This installation already uses version {installation.spec_version.number}, "
                "the latest approved version of its spec: there is nothing to upgrade to."
            )
        data = serializer.validated_data
        upgraded = _installation_write(
            lambda: services.installation_upgrade(
                installation=installation,
                spec_version=target,
                properties=dict(data.get("properties") or {}),
                secret_properties=dict(data.get("secret_properties") or {}),
            )
        )
        return Response(InstallationOutputSerializer(upgraded).data)


# --- CRM users and user mapping -------------------------------------------------------------


class CrmUserOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = CrmUser
        fields = ("id", "external_id", "name", "email", "present", "fetched_at")
        read_only_fields = fields


class MappingPbxUserOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = PbxUser
        fields = ("id", "extension", "name", "email")
        read_only_fields = fields


class UserMappingOutputSerializer(serializers.Serializer):
    pbx_user = MappingPbxUserOutputSerializer()
    crm_user = CrmUserOutputSerializer(allow_null=True)
    manual = serializers.BooleanField(help_text="Chosen by an admin; re-fetching keeps it.")
    status = serializers.ChoiceField(
        choices=["auto", "manual", "unmatched", "disappeared"],
        help_text="auto: matched by email; disappeared: the CRM no longer returns the user.",
    )


class UserMappingInputSerializer(serializers.Serializer):
    crm_user = serializers.IntegerField(
        allow_null=True, help_text="A CRM user id of this installation; null: not mapped."
    )


class UserFetchOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = UserFetch
        fields = ("id", "state", "fetched", "error", "created_at", "finished_at")
        read_only_fields = fields


def _crm_installation(request: Request, installation_id: int) -> Installation:
    installation = selectors.installation_get(user=request.user, pk=installation_id)
    if installation.spec_version.spec.spec_class != IntegrationSpec.SpecClass.CRM:
        raise serializers.ValidationError(
            {"installation": ["Users are mapped for CRM integrations only."]}
        )
    return installation


class UserMappingListApi(APIView):
    pagination_class = PagePagination

    @extend_schema(
        tags=["user mapping"],
        operation_id="installations_user_mapping_list",
        summary="Every PBX user of the organization with its CRM user",
        parameters=[INSTALLATION_ID],
        responses={200: UserMappingOutputSerializer(many=True), **READ_ERRORS},
    )
    def get(self, request: Request, installation_id: int) -> Response:
        installation = selectors.installation_get(user=request.user, pk=installation_id)
        return paginated_response(
            request=request,
            view=self,
            queryset=user_mapping_rows(installation=installation),
            serializer_class=UserMappingOutputSerializer,
        )


class UserMappingDetailApi(APIView):
    def _get(self, request: Request, installation_id: int, pbx_user_id: int) -> tuple:
        installation = selectors.installation_get(user=request.user, pk=installation_id)
        pbx_user = tenant_selectors.pbx_user_get(
            user=request.user, organization=installation.organization, pk=pbx_user_id
        )
        return installation, pbx_user

    @extend_schema(
        tags=["user mapping"],
        operation_id="installations_user_mapping_retrieve",
        summary="The CRM user of one PBX user",
        parameters=[INSTALLATION_ID, PBX_USER_ID],
        responses={200: UserMappingOutputSerializer, **READ_ERRORS},
    )
    def get(self, request: Request, installation_id: int, pbx_user_id: int) -> Response:
        installation, pbx_user = self._get(request, installation_id, pbx_user_id)
        row = user_mapping_row(installation=installation, pbx_user=pbx_user)
        return Response(UserMappingOutputSerializer(row).data)

    @extend_schema(
        tags=["user mapping"],
        operation_id="installations_user_mapping_set",
        summary="Map a PBX user to a CRM user by hand (kept across re-fetches)",
        parameters=[INSTALLATION_ID, PBX_USER_ID],
        request=UserMappingInputSerializer,
        responses={200: UserMappingOutputSerializer, **WRITE_ERRORS},
    )
    def put(self, request: Request, installation_id: int, pbx_user_id: int) -> Response:
        installation, pbx_user = self._get(request, installation_id, pbx_user_id)
        serializer = UserMappingInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        crm_user_id = serializer.validated_data["crm_user"]
        crm_user = None
        if crm_user_id is not None:
            crm_user = crm_user_list(installation=installation).filter(pk=crm_user_id).first()
            if crm_user is None:
                raise serializers.ValidationError(
                    {"crm_user": ["No such CRM user in this integration."]}
                )
        user_mapping_set(installation=installation, pbx_user=pbx_user, crm_user=crm_user)
        row = user_mapping_row(installation=installation, pbx_user=pbx_user)
        return Response(UserMappingOutputSerializer(row).data)

    @extend_schema(
        tags=["user mapping"],
        operation_id="installations_user_mapping_reset",
        summary="Forget the manual choice: match the PBX user by email again",
        parameters=[INSTALLATION_ID, PBX_USER_ID],
        request=None,
        responses={200: UserMappingOutputSerializer, **READ_ERRORS},
    )
    def delete(self, request: Request, installation_id: int, pbx_user_id: int) -> Response:
        installation, pbx_user = self._get(request, installation_id, pbx_user_id)
        user_mapping_reset(installation=installation, pbx_user=pbx_user)
        row = user_mapping_row(installation=installation, pbx_user=pbx_user)
        return Response(UserMappingOutputSerializer(row).data)


class CrmUserListApi(APIView):
    pagination_class = PagePagination

    @extend_schema(
        tags=["user mapping"],
        operation_id="installations_crm_users_list",
        summary="CRM users as last fetched (present ones first)",
        parameters=[INSTALLATION_ID],
        responses={200: CrmUserOutputSerializer(many=True), **READ_ERRORS},
    )
    def get(self, request: Request, installation_id: int) -> Response:
        installation = selectors.installation_get(user=request.user, pk=installation_id)
        return paginated_response(
            request=request,
            view=self,
            queryset=crm_user_list(installation=installation),
            serializer_class=CrmUserOutputSerializer,
        )


class CrmUserFetchApi(APIView):
    @extend_schema(
        tags=["user mapping"],
        operation_id="installations_crm_users_fetch_latest",
        summary="The latest CRM user fetch and its progress",
        parameters=[INSTALLATION_ID],
        responses={200: UserFetchOutputSerializer, **READ_ERRORS},
    )
    def get(self, request: Request, installation_id: int) -> Response:
        installation = selectors.installation_get(user=request.user, pk=installation_id)
        fetch = crm_users_fetch_latest(installation=installation)
        if fetch is None:
            raise Http404("CRM users were never fetched.")
        return Response(UserFetchOutputSerializer(fetch).data)

    @extend_schema(
        tags=["user mapping"],
        operation_id="installations_crm_users_fetch",
        summary="Fetch the CRM users in the background",
        description="Returns the fetch at once (202); poll its status until `state` is `done` "
        "or `failed`. Then PBX users are matched by email; manual choices are kept and CRM "
        "users the CRM no longer returns are flagged. A fetch already running is returned.",
        parameters=[INSTALLATION_ID],
        request=None,
        responses={202: UserFetchOutputSerializer, **WRITE_ERRORS},
    )
    def post(self, request: Request, installation_id: int) -> Response:
        installation = _crm_installation(request, installation_id)
        try:
            fetch = crm_users_fetch_start(installation=installation)
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"installation": exc.messages}) from exc
        return Response(UserFetchOutputSerializer(fetch).data, status=status.HTTP_202_ACCEPTED)


class CrmUserFetchDetailApi(APIView):
    @extend_schema(
        tags=["user mapping"],
        operation_id="installations_crm_users_fetch_retrieve",
        summary="The progress of one CRM user fetch",
        parameters=[INSTALLATION_ID, FETCH_ID],
        responses={200: UserFetchOutputSerializer, **READ_ERRORS},
    )
    def get(self, request: Request, installation_id: int, fetch_id: int) -> Response:
        installation = selectors.installation_get(user=request.user, pk=installation_id)
        fetch = crm_users_fetch_get(installation=installation, pk=fetch_id)
        return Response(UserFetchOutputSerializer(fetch).data)


# --- SMS numbers of an SMS installation ------------------------------------------------------


class BoundSmsNumberOutputSerializer(serializers.ModelSerializer):
    users = serializers.PrimaryKeyRelatedField(
        many=True, read_only=True, help_text="Ids of the PBX users assigned to the number."
    )

    class Meta:
        model = SmsNumber
        fields = ("id", "organization", "number", "label", "installation", "users")
        read_only_fields = fields


class SmsNumberBindInputSerializer(serializers.Serializer):
    users = serializers.ListField(
        child=serializers.IntegerField(),
        required=False,
        help_text="Ids of PBX users of the organization; replaces the assignment when given.",
    )


class SmsNumberListApi(APIView):
    pagination_class = PagePagination

    @extend_schema(
        tags=["sms numbers"],
        operation_id="installations_sms_numbers_list",
        summary="The SMS numbers bound to an SMS installation",
        parameters=[INSTALLATION_ID],
        responses={200: BoundSmsNumberOutputSerializer(many=True), **READ_ERRORS},
    )
    def get(self, request: Request, installation_id: int) -> Response:
        installation = selectors.installation_get(user=request.user, pk=installation_id)
        return paginated_response(
            request=request,
            view=self,
            queryset=sms_number_list_bound(installation=installation),
            serializer_class=BoundSmsNumberOutputSerializer,
        )


class SmsNumberBindApi(APIView):
    def _get(self, request: Request, installation_id: int, sms_number_id: int) -> tuple:
        installation = selectors.installation_get(user=request.user, pk=installation_id)
        sms_number = tenant_selectors.sms_number_get(
            user=request.user, organization=installation.organization, pk=sms_number_id
        )
        return installation, sms_number

    @extend_schema(
        tags=["sms numbers"],
        operation_id="installations_sms_numbers_bind",
        summary="Bind an SMS number of the organization to this SMS installation",
        description="Optionally assigns the number to exactly `users`. Only an `sms` "
        "installation of the number's organization can be bound.",
        parameters=[INSTALLATION_ID, SMS_NUMBER_ID],
        request=SmsNumberBindInputSerializer,
        responses={200: BoundSmsNumberOutputSerializer, **WRITE_ERRORS},
    )
    def put(self, request: Request, installation_id: int, sms_number_id: int) -> Response:
        installation, sms_number = self._get(request, installation_id, sms_number_id)
        serializer = SmsNumberBindInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        users = None
        if "users" in serializer.validated_data:
            wanted = set(serializer.validated_data["users"])
            users = list(
                tenant_selectors.pbx_user_list(
                    user=request.user, organization=installation.organization
                ).filter(pk__in=wanted)
            )
            if len(users) != len(wanted):
                raise serializers.ValidationError(
                    {"users": ["Every user must be a PBX user of this organization."]}
                )
        sms_number = sms_number_bind(installation=installation, sms_number=sms_number, users=users)
        return Response(BoundSmsNumberOutputSerializer(sms_number).data)

    @extend_schema(
        tags=["sms numbers"],
        operation_id="installations_sms_numbers_unbind",
        summary="Unbind an SMS number from this installation",
        parameters=[INSTALLATION_ID, SMS_NUMBER_ID],
        request=None,
        responses={204: None, **READ_ERRORS},
    )
    def delete(self, request: Request, installation_id: int, sms_number_id: int) -> Response:
        installation, sms_number = self._get(request, installation_id, sms_number_id)
        if sms_number.installation_id == installation.pk:
            sms_number_bind(installation=None, sms_number=sms_number)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Delivery log ---------------------------------------------------------------------------


class DeliveryLogOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeliveryLogEntry
        fields = (
            "id",
            "installation",
            "method_name",
            "http_method",
            "url",
            "status_code",
            "ok",
            "duration_ms",
            "attempt",
            "error",
            "produced_ids",
            "created_at",
        )
        read_only_fields = fields


class DeliveryLogDetailOutputSerializer(DeliveryLogOutputSerializer):
    class Meta(DeliveryLogOutputSerializer.Meta):
        fields = (*DeliveryLogOutputSerializer.Meta.fields, "request_body", "response_body")
        read_only_fields = fields


class DeliveryLogListApi(APIView):
    pagination_class = PagePagination

    @extend_schema(
        tags=["delivery log"],
        operation_id="installations_log_list",
        summary="Every outbound request of an installation, newest first",
        parameters=[
            INSTALLATION_ID,
            OpenApiParameter(
                "status",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                enum=list(STATUS_CHOICES),
                description="Only successful (ok) or failed requests.",
            ),
        ],
        responses={200: DeliveryLogOutputSerializer(many=True), **READ_ERRORS},
    )
    def get(self, request: Request, installation_id: int) -> Response:
        installation = selectors.installation_get(user=request.user, pk=installation_id)
        status_filter = request.query_params.get("status") or None
        if status_filter is not None and status_filter not in STATUS_CHOICES:
            raise serializers.ValidationError({"status": ["Use ok or failed."]})
        entries = delivery_log_list(
            user=request.user, installation=installation, status=status_filter
        )
        return paginated_response(
            request=request,
            view=self,
            queryset=entries,
            serializer_class=DeliveryLogOutputSerializer,
        )


class DeliveryLogDetailApi(APIView):
    @extend_schema(
        tags=["delivery log"],
        operation_id="log_retrieve",
        summary="One delivery log entry with its request and response bodies (redacted)",
        parameters=[ENTRY_ID],
        responses={200: DeliveryLogDetailOutputSerializer, **READ_ERRORS},
    )
    def get(self, request: Request, entry_id: int) -> Response:
        entry = delivery_log_get(user=request.user, pk=entry_id)
        return Response(DeliveryLogDetailOutputSerializer(entry).data)
