"""REST API v1 for tenant data: organizations, their PBX users and SMS numbers.

Views are thin: they read through `tenants.selectors` (so a row of another tenant is a 404)
and write through `tenants.services`. Input and output serializers are kept apart; errors
are rendered by `portal.api.exceptions.api_exception_handler` as
``{"message": ..., "errors": {field: [...]}}``.

PUT replaces the editable fields (an omitted optional field is reset to its default);
PATCH changes only the fields it sends.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

import portal.api.oauth  # noqa: F401  (registers the OAuth2 OpenAPI security scheme)
from portal.api.pagination import PagePagination, paginated_response
from tenants import selectors, services
from tenants.models import Account, Organization, PbxUser, SmsNumber

# --- Shared schema pieces ------------------------------------------------------------------


class ErrorOutputSerializer(serializers.Serializer):
    """The one error shape of the API."""

    message = serializers.CharField()
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Field name → messages; empty when the error concerns no field.",
    )


ERROR_RESPONSES: dict[int, OpenApiResponse] = {
    400: OpenApiResponse(ErrorOutputSerializer, description="Invalid input."),
    401: OpenApiResponse(ErrorOutputSerializer, description="Not authenticated."),
    403: OpenApiResponse(
        ErrorOutputSerializer, description="Not allowed, or the token lacks a scope."
    ),
    404: OpenApiResponse(ErrorOutputSerializer, description="Not found (or another tenant's)."),
}
AUTH_ERRORS = {code: ERROR_RESPONSES[code] for code in (401, 403)}
READ_ERRORS = {code: ERROR_RESPONSES[code] for code in (401, 403, 404)}
WRITE_ERRORS = ERROR_RESPONSES

SEARCH_PARAMETER = OpenApiParameter(
    "search", OpenApiTypes.STR, OpenApiParameter.QUERY, description="Case-insensitive filter."
)


# --- Organizations -------------------------------------------------------------------------


class OrganizationOutputSerializer(serializers.ModelSerializer):
    account_name = serializers.CharField(source="account.name", read_only=True)

    class Meta:
        model = Organization
        fields = (
            "id",
            "account",
            "account_name",
            "name",
            "slug",
            "pbx_domain",
            "default_region",
            "webhook_key",
            "created_at",
            "updated_at",
        )
        read_only_fields = fields


class OrganizationCreatedOutputSerializer(OrganizationOutputSerializer):
    """The organization just created, with its webhook secret: the only time it is shown."""

    webhook_secret = serializers.CharField(
        read_only=True,
        help_text=(
            "Secret the PBX signs its webhooks with. Shown in this response only: store it now "
            "(a lost secret is replaced with POST .../webhook-secret/rotate/)."
        ),
    )

    class Meta(OrganizationOutputSerializer.Meta):
        fields = (*OrganizationOutputSerializer.Meta.fields, "webhook_secret")
        read_only_fields = fields


class WebhookSecretOutputSerializer(serializers.Serializer):
    webhook_key = serializers.CharField(help_text="Public identifier in the webhook URL.")
    webhook_secret = serializers.CharField(
        help_text="The new secret, shown in this response only; the previous one stops working."
    )


class OrganizationCreateInputSerializer(serializers.Serializer):
    account = serializers.PrimaryKeyRelatedField(
        queryset=Account.objects.none(),
        required=False,
        help_text="Required only when you manage several accounts.",
    )
    name = serializers.CharField(max_length=200)
    slug = serializers.SlugField(max_length=80, required=False, help_text="Derived from name.")
    pbx_domain = serializers.CharField(max_length=253, required=False, allow_blank=True)
    default_region = serializers.CharField(
        max_length=2, required=False, help_text="ISO country code, e.g. US or GB."
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None:
            self.fields["account"].queryset = selectors.accounts_managed_by(user=request.user)


class OrganizationUpdateInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    slug = serializers.SlugField(max_length=80, required=False, help_text="Kept when omitted.")
    pbx_domain = serializers.CharField(max_length=253, allow_blank=True, default="")
    default_region = serializers.CharField(max_length=2, default="US")


# Responses that carry a secret must not be kept by a cache on the way.
NO_STORE = {"Cache-Control": "no-store"}

ORGANIZATION_ID = OpenApiParameter(
    "org_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Organization id."
)


class OrganizationListCreateApi(APIView):
    pagination_class = PagePagination

    @extend_schema(
        tags=["organizations"],
        operation_id="organizations_list",
        summary="List the organizations you manage",
        parameters=[SEARCH_PARAMETER],
        responses={200: OrganizationOutputSerializer(many=True), **AUTH_ERRORS},
    )
    def get(self, request: Request) -> Response:
        organizations = selectors.organization_list(
            user=request.user, search=request.query_params.get("search", "").strip()
        )
        return paginated_response(
            request=request,
            view=self,
            queryset=organizations,
            serializer_class=OrganizationOutputSerializer,
        )

    @extend_schema(
        tags=["organizations"],
        operation_id="organizations_create",
        summary="Create an organization (reseller admins only)",
        request=OrganizationCreateInputSerializer,
        responses={201: OrganizationCreatedOutputSerializer, **WRITE_ERRORS},
    )
    def post(self, request: Request) -> Response:
        accounts = selectors.accounts_managed_by(user=request.user)
        if not accounts.exists():
            raise PermissionDenied("Only reseller admins can create organizations.")
        serializer = OrganizationCreateInputSerializer(
            data=request.data, context={"request": request}
        )
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        account = data.pop("account", None)
        if account is None:
            if accounts.count() > 1:
                raise serializers.ValidationError(
                    {"account": ["Required: you manage several accounts; say which one."]}
                )
            account = accounts.get()
        organization = services.organization_create(user=request.user, account=account, **data)
        return Response(
            OrganizationCreatedOutputSerializer(organization).data,
            status=status.HTTP_201_CREATED,
            headers=NO_STORE,
        )


class OrganizationDetailApi(APIView):
    @extend_schema(
        tags=["organizations"],
        operation_id="organizations_retrieve",
        summary="Get an organization",
        parameters=[ORGANIZATION_ID],
        responses={200: OrganizationOutputSerializer, **READ_ERRORS},
    )
    def get(self, request: Request, org_id: int) -> Response:
        organization = selectors.organization_get(user=request.user, pk=org_id)
        return Response(OrganizationOutputSerializer(organization).data)

    def _update(self, request: Request, org_id: int, *, partial: bool) -> Response:
        organization = selectors.organization_get(user=request.user, pk=org_id)
        serializer = OrganizationUpdateInputSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        organization = services.organization_update(
            organization=organization, **serializer.validated_data
        )
        return Response(OrganizationOutputSerializer(organization).data)

    @extend_schema(
        tags=["organizations"],
        operation_id="organizations_replace",
        summary="Replace an organization's settings",
        parameters=[ORGANIZATION_ID],
        request=OrganizationUpdateInputSerializer,
        responses={200: OrganizationOutputSerializer, **WRITE_ERRORS},
    )
    def put(self, request: Request, org_id: int) -> Response:
        return self._update(request, org_id, partial=False)

    @extend_schema(
        tags=["organizations"],
        operation_id="organizations_partial_update",
        summary="Change some of an organization's settings",
        parameters=[ORGANIZATION_ID],
        request=OrganizationUpdateInputSerializer(partial=True),
        responses={200: OrganizationOutputSerializer, **WRITE_ERRORS},
    )
    def patch(self, request: Request, org_id: int) -> Response:
        return self._update(request, org_id, partial=True)

    @extend_schema(
        tags=["organizations"],
        operation_id="organizations_destroy",
        summary="Delete an organization (reseller admins only)",
        parameters=[ORGANIZATION_ID],
        request=None,
        responses={204: None, **READ_ERRORS},
    )
    def delete(self, request: Request, org_id: int) -> Response:
        organization = selectors.organization_get(user=request.user, pk=org_id)
        services.organization_delete(user=request.user, organization=organization)
        return Response(status=status.HTTP_204_NO_CONTENT)


class OrganizationWebhookSecretRotateApi(APIView):
    @extend_schema(
        tags=["organizations"],
        operation_id="organizations_webhook_secret_rotate",
        summary="Replace an organization's webhook secret",
        description=(
            "Generates a new webhook secret and returns it, in this response only. The previous "
            "secret stops working at once: configure the PBX with the new one."
        ),
        parameters=[ORGANIZATION_ID],
        request=None,
        responses={200: WebhookSecretOutputSerializer, **WRITE_ERRORS},
    )
    def post(self, request: Request, org_id: int) -> Response:
        organization = selectors.organization_get(user=request.user, pk=org_id)
        secret = services.organization_rotate_webhook_secret(organization=organization)
        return Response(
            WebhookSecretOutputSerializer(
                {"webhook_key": organization.webhook_key, "webhook_secret": secret}
            ).data,
            headers=NO_STORE,
        )


# --- PBX users -----------------------------------------------------------------------------


class PbxUserOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = PbxUser
        fields = ("id", "organization", "extension", "name", "email", "mobile", "created_at")
        read_only_fields = fields


class PbxUserInputSerializer(serializers.Serializer):
    extension = serializers.CharField(max_length=20, help_text="Digits only, e.g. 101.")
    name = serializers.CharField(max_length=200)
    email = serializers.EmailField(allow_blank=True, default="")
    mobile = serializers.CharField(
        max_length=32,
        allow_blank=True,
        default="",
        help_text="Any format; stored in E.164 (national numbers read in the org's region).",
    )


PBX_USER_ID = OpenApiParameter(
    "pbx_user_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="PBX user id."
)


class PbxUserListCreateApi(APIView):
    pagination_class = PagePagination

    @extend_schema(
        tags=["pbx users"],
        operation_id="organizations_users_list",
        summary="List an organization's PBX users",
        parameters=[ORGANIZATION_ID, SEARCH_PARAMETER],
        responses={200: PbxUserOutputSerializer(many=True), **READ_ERRORS},
    )
    def get(self, request: Request, org_id: int) -> Response:
        organization = selectors.organization_get(user=request.user, pk=org_id)
        pbx_users = selectors.pbx_user_list(
            user=request.user,
            organization=organization,
            search=request.query_params.get("search", "").strip(),
        )
        return paginated_response(
            request=request, view=self, queryset=pbx_users, serializer_class=PbxUserOutputSerializer
        )

    @extend_schema(
        tags=["pbx users"],
        operation_id="organizations_users_create",
        summary="Add a PBX user to an organization",
        parameters=[ORGANIZATION_ID],
        request=PbxUserInputSerializer,
        responses={201: PbxUserOutputSerializer, **WRITE_ERRORS},
    )
    def post(self, request: Request, org_id: int) -> Response:
        organization = selectors.organization_get(user=request.user, pk=org_id)
        serializer = PbxUserInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        pbx_user = services.pbx_user_create(organization=organization, **serializer.validated_data)
        return Response(PbxUserOutputSerializer(pbx_user).data, status=status.HTTP_201_CREATED)


class PbxUserDetailApi(APIView):
    def _get(self, request: Request, org_id: int, pbx_user_id: int) -> PbxUser:
        organization = selectors.organization_get(user=request.user, pk=org_id)
        return selectors.pbx_user_get(user=request.user, organization=organization, pk=pbx_user_id)

    @extend_schema(
        tags=["pbx users"],
        operation_id="organizations_users_retrieve",
        summary="Get a PBX user",
        parameters=[ORGANIZATION_ID, PBX_USER_ID],
        responses={200: PbxUserOutputSerializer, **READ_ERRORS},
    )
    def get(self, request: Request, org_id: int, pbx_user_id: int) -> Response:
        return Response(PbxUserOutputSerializer(self._get(request, org_id, pbx_user_id)).data)

    def _update(
        self, request: Request, org_id: int, pbx_user_id: int, *, partial: bool
    ) -> Response:
        pbx_user = self._get(request, org_id, pbx_user_id)
        serializer = PbxUserInputSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        pbx_user = services.pbx_user_update(pbx_user=pbx_user, **serializer.validated_data)
        return Response(PbxUserOutputSerializer(pbx_user).data)

    @extend_schema(
        tags=["pbx users"],
        operation_id="organizations_users_replace",
        summary="Replace a PBX user",
        parameters=[ORGANIZATION_ID, PBX_USER_ID],
        request=PbxUserInputSerializer,
        responses={200: PbxUserOutputSerializer, **WRITE_ERRORS},
    )
    def put(self, request: Request, org_id: int, pbx_user_id: int) -> Response:
        return self._update(request, org_id, pbx_user_id, partial=False)

    @extend_schema(
        tags=["pbx users"],
        operation_id="organizations_users_partial_update",
        summary="Change some fields of a PBX user",
        parameters=[ORGANIZATION_ID, PBX_USER_ID],
        request=PbxUserInputSerializer(partial=True),
        responses={200: PbxUserOutputSerializer, **WRITE_ERRORS},
    )
    def patch(self, request: Request, org_id: int, pbx_user_id: int) -> Response:
        return self._update(request, org_id, pbx_user_id, partial=True)

    @extend_schema(
        tags=["pbx users"],
        operation_id="organizations_users_destroy",
        summary="Delete a PBX user",
        parameters=[ORGANIZATION_ID, PBX_USER_ID],
        request=None,
        responses={204: None, **READ_ERRORS},
    )
    def delete(self, request: Request, org_id: int, pbx_user_id: int) -> Response:
        services.pbx_user_delete(pbx_user=self._get(request, org_id, pbx_user_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- SMS numbers ---------------------------------------------------------------------------


class SmsNumberOutputSerializer(serializers.ModelSerializer):
    users = serializers.PrimaryKeyRelatedField(
        many=True, read_only=True, help_text="Ids of the PBX users assigned to the number."
    )

    class Meta:
        model = SmsNumber
        fields = ("id", "organization", "number", "label", "users", "created_at")
        read_only_fields = fields


class SmsNumberInputSerializer(serializers.Serializer):
    number = serializers.CharField(
        max_length=32,
        help_text="Any format; stored in E.164 (national numbers read in the org's region).",
    )
    label = serializers.CharField(max_length=100, allow_blank=True, default="")
    users = serializers.PrimaryKeyRelatedField(
        many=True,
        queryset=PbxUser.objects.none(),
        default=list,
        help_text="Ids of PBX users of this organization; replaces the assignment.",
    )

    def __init__(self, *args: Any, organization: Organization | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if organization is not None:
            # Only users of this organization are acceptable: a foreign id is
            # "object does not exist" on `users`, never an assignment across tenants.
            self.fields["users"].child_relation.queryset = selectors.pbx_user_list(
                user=self.context["request"].user, organization=organization
            )


SMS_NUMBER_ID = OpenApiParameter(
    "sms_number_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="SMS number id."
)


class SmsNumberListCreateApi(APIView):
    pagination_class = PagePagination

    @extend_schema(
        tags=["sms numbers"],
        operation_id="organizations_sms_numbers_list",
        summary="List an organization's SMS numbers",
        parameters=[ORGANIZATION_ID],
        responses={200: SmsNumberOutputSerializer(many=True), **READ_ERRORS},
    )
    def get(self, request: Request, org_id: int) -> Response:
        organization = selectors.organization_get(user=request.user, pk=org_id)
        sms_numbers = selectors.sms_number_list(user=request.user, organization=organization)
        return paginated_response(
            request=request,
            view=self,
            queryset=sms_numbers,
            serializer_class=SmsNumberOutputSerializer,
        )

    @extend_schema(
        tags=["sms numbers"],
        operation_id="organizations_sms_numbers_create",
        summary="Add an SMS number to an organization",
        parameters=[ORGANIZATION_ID],
        request=SmsNumberInputSerializer,
        responses={201: SmsNumberOutputSerializer, **WRITE_ERRORS},
    )
    def post(self, request: Request, org_id: int) -> Response:
        organization = selectors.organization_get(user=request.user, pk=org_id)
        serializer = SmsNumberInputSerializer(
            data=request.data, organization=organization, context={"request": request}
        )
        serializer.is_valid(raise_exception=True)
        sms_number = services.sms_number_create(
            organization=organization, **serializer.validated_data
        )
        return Response(SmsNumberOutputSerializer(sms_number).data, status=status.HTTP_201_CREATED)


class SmsNumberDetailApi(APIView):
    def _get(self, request: Request, org_id: int, sms_number_id: int) -> SmsNumber:
        organization = selectors.organization_get(user=request.user, pk=org_id)
        return selectors.sms_number_get(
            user=request.user, organization=organization, pk=sms_number_id
        )

    @extend_schema(
        tags=["sms numbers"],
        operation_id="organizations_sms_numbers_retrieve",
        summary="Get an SMS number",
        parameters=[ORGANIZATION_ID, SMS_NUMBER_ID],
        responses={200: SmsNumberOutputSerializer, **READ_ERRORS},
    )
    def get(self, request: Request, org_id: int, sms_number_id: int) -> Response:
        return Response(SmsNumberOutputSerializer(self._get(request, org_id, sms_number_id)).data)

    def _update(
        self, request: Request, org_id: int, sms_number_id: int, *, partial: bool
    ) -> Response:
        sms_number = self._get(request, org_id, sms_number_id)
        serializer = SmsNumberInputSerializer(
            data=request.data,
            partial=partial,
            organization=sms_number.organization,
            context={"request": request},
        )
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        with transaction.atomic():
            sms_number = services.sms_number_update(
                sms_number=sms_number, number=data.get("number"), label=data.get("label")
            )
            if "users" in data:
                services.sms_number_assign(sms_number=sms_number, users=data["users"])
        return Response(SmsNumberOutputSerializer(sms_number).data)

    @extend_schema(
        tags=["sms numbers"],
        operation_id="organizations_sms_numbers_replace",
        summary="Replace an SMS number",
        parameters=[ORGANIZATION_ID, SMS_NUMBER_ID],
        request=SmsNumberInputSerializer,
        responses={200: SmsNumberOutputSerializer, **WRITE_ERRORS},
    )
    def put(self, request: Request, org_id: int, sms_number_id: int) -> Response:
        return self._update(request, org_id, sms_number_id, partial=False)

    @extend_schema(
        tags=["sms numbers"],
        operation_id="organizations_sms_numbers_partial_update",
        summary="Change some fields of an SMS number",
        parameters=[ORGANIZATION_ID, SMS_NUMBER_ID],
        request=SmsNumberInputSerializer(partial=True),
        responses={200: SmsNumberOutputSerializer, **WRITE_ERRORS},
    )
    def patch(self, request: Request, org_id: int, sms_number_id: int) -> Response:
        return self._update(request, org_id, sms_number_id, partial=True)

    @extend_schema(
        tags=["sms numbers"],
        operation_id="organizations_sms_numbers_destroy",
        summary="Delete an SMS number",
        parameters=[ORGANIZATION_ID, SMS_NUMBER_ID],
        request=None,
        responses={204: None, **READ_ERRORS},
    )
    def delete(self, request: Request, org_id: int, sms_number_id: int) -> Response:
        services.sms_number_delete(sms_number=self._get(request, org_id, sms_number_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
