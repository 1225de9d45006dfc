"""REST API v1 for an organization's outbound callbacks:
``/api/v1/organizations/<org_id>/callbacks/`` (list, create), ``…/<callback_id>/`` (get,
replace, change, delete), ``…/<callback_id>/test/`` (queue a sample event),
``…/<callback_id>/deliveries/`` (recent deliveries) and
``…/<callback_id>/deliveries/<delivery_id>/retry/`` (send a failed delivery again).

Views are thin: the organization is read through `tenants.selectors.organization_get` and the
subscription through `integrations.callbacks.callback_subscription_get` (another tenant's ids
are 404); writes go through the services of `integrations.callbacks`. Secrets are write-only:
`auth_password` and `signing_secret` are accepted and never returned, except the signing
secret generated on create, returned once in the create response.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

import portal.api.oauth  # noqa: F401  (registers the OAuth2 OpenAPI security scheme)
from integrations import callbacks
from integrations.models import CallbackDelivery, CallbackSubscription
from portal.api.pagination import PagePagination, paginated_response
from tenants import selectors as tenant_selectors
from tenants.apis import READ_ERRORS, WRITE_ERRORS

ORGANIZATION_ID = OpenApiParameter(
    "org_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Organization id."
)
CALLBACK_ID = OpenApiParameter(
    "callback_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Callback id."
)
DELIVERY_ID = OpenApiParameter(
    "delivery_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Delivery id."
)
TAGS = ["callbacks"]


class CallbackOutputSerializer(serializers.ModelSerializer):
    has_auth_password = serializers.SerializerMethodField(
        help_text="Whether a Basic auth password is set (it is never returned)."
    )
    signed = serializers.SerializerMethodField(
        help_text="Whether deliveries carry Standard Webhooks signatures."
    )

    class Meta:
        model = CallbackSubscription
        fields = (
            "id",
            "organization",
            "name",
            "callback_type",
            "url",
            "auth_username",
            "has_auth_password",
            "headers",
            "signed",
            "bindings",
            "active",
            "consecutive_failures",
            "disabled_reason",
            "disabled_at",
            "created_at",
            "updated_at",
        )
        read_only_fields = fields

    def get_has_auth_password(self, obj: CallbackSubscription) -> bool:
        return bool(obj.auth_password)

    def get_signed(self, obj: CallbackSubscription) -> bool:
        return bool(obj.signing_secret)


class CallbackCreatedOutputSerializer(CallbackOutputSerializer):
    signing_secret = serializers.CharField(
        allow_blank=True,
        help_text="Returned once, on create: verify deliveries with it. Empty when unsigned.",
    )

    class Meta(CallbackOutputSerializer.Meta):
        fields = (*CallbackOutputSerializer.Meta.fields, "signing_secret")
        read_only_fields = fields


class CallbackInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    callback_type = serializers.ChoiceField(choices=CallbackSubscription.CallbackType.choices)
    url = serializers.CharField(
        max_length=2000, help_text="http(s) URL; {tokens} are replaced, URL-encoded."
    )
    auth_username = serializers.CharField(
        max_length=200, allow_blank=True, default="", help_text="Basic auth; not token-replaced."
    )
    auth_password = serializers.CharField(
        allow_blank=True,
        required=False,
        write_only=True,
        help_text="Write-only. Omit to keep the current one; empty to remove it.",
    )
    headers = serializers.CharField(
        allow_blank=True, default="", help_text="One Name:value per line; token-replaced."
    )
    signing_secret = serializers.CharField(
        allow_blank=True,
        required=False,
        write_only=True,
        help_text="Write-only. On create, omit it to have one generated (returned once); "
        "empty for unsigned deliveries. A whsec_<base64> secret is used as its decoded key.",
    )
    bindings = serializers.ListField(
        child=serializers.CharField(max_length=100),
        default=list,
        help_text="Numbers (sms), mailboxes (voicemail, fax) or groups (call_alert); empty = all.",
    )
    active = serializers.BooleanField(
        default=True, help_text="Setting true again re-enables a callback disabled by failures."
    )


class CallbackDeliveryOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = CallbackDelivery
        fields = (
            "id",
            "webhook_id",
            "inbox_event",
            "state",
            "attempts",
            "last_status",
            "last_error",
            "next_attempt_at",
            "delivered_at",
            "created_at",
        )
        read_only_fields = fields


def _subscription(request: Request, org_id: int, callback_id: int) -> CallbackSubscription:
    organization = tenant_selectors.organization_get(user=request.user, pk=org_id)
    return callbacks.callback_subscription_get(
        user=request.user, organization=organization, pk=callback_id
    )


class CallbackListCreateApi(APIView):
    pagination_class = PagePagination

    @extend_schema(
        tags=TAGS,
        operation_id="organizations_callbacks_list",
        summary="List an organization's outbound callbacks",
        parameters=[ORGANIZATION_ID],
        responses={200: CallbackOutputSerializer(many=True), **READ_ERRORS},
    )
    def get(self, request: Request, org_id: int) -> Response:
        organization = tenant_selectors.organization_get(user=request.user, pk=org_id)
        return paginated_response(
            request=request,
            view=self,
            queryset=callbacks.callback_subscription_list(
                user=request.user, organization=organization
            ),
            serializer_class=CallbackOutputSerializer,
        )

    @extend_schema(
        tags=TAGS,
        operation_id="organizations_callbacks_create",
        summary="Create an outbound callback",
        parameters=[ORGANIZATION_ID],
        request=CallbackInputSerializer,
        responses={201: CallbackCreatedOutputSerializer, **WRITE_ERRORS},
    )
    def post(self, request: Request, org_id: int) -> Response:
        organization = tenant_selectors.organization_get(user=request.user, pk=org_id)
        serializer = CallbackInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data: dict[str, Any] = dict(serializer.validated_data)
        subscription, secret = callbacks.callback_subscription_create(
            organization=organization,
            name=data["name"],
            callback_type=data["callback_type"],
            url=data["url"],
            auth_username=data["auth_username"],
            auth_password=data.get("auth_password", ""),
            headers=data["headers"],
            signing_secret=data.get("signing_secret"),
            bindings=data["bindings"],
            active=data["active"],
        )
        body = dict(CallbackOutputSerializer(subscription).data)
        # Only a secret we generated is shown; one the client sent it already knows.
        body["signing_secret"] = secret if "signing_secret" not in data else ""
        return Response(body, status=status.HTTP_201_CREATED)


class CallbackDetailApi(APIView):
    @extend_schema(
        tags=TAGS,
        operation_id="organizations_callbacks_retrieve",
        summary="Get an outbound callback",
        parameters=[ORGANIZATION_ID, CALLBACK_ID],
        responses={200: CallbackOutputSerializer, **READ_ERRORS},
    )
    def get(self, request: Request, org_id: int, callback_id: int) -> Response:
        return Response(CallbackOutputSerializer(_subscription(request, org_id, callback_id)).data)

    def _update(
        self, request: Request, org_id: int, callback_id: int, *, partial: bool
    ) -> Response:
        subscription = _subscription(request, org_id, callback_id)
        serializer = CallbackInputSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        callbacks.callback_subscription_update(
            subscription=subscription,
            name=data.get("name"),
            callback_type=data.get("callback_type"),
            url=data.get("url"),
            auth_username=data.get("auth_username"),
            auth_password=data.get("auth_password"),
            headers=data.get("headers"),
            signing_secret=data.get("signing_secret"),
            bindings=data.get("bindings"),
            active=data.get("active"),
        )
        return Response(CallbackOutputSerializer(subscription).data)

    @extend_schema(
        tags=TAGS,
        operation_id="organizations_callbacks_replace",
        summary="Replace an outbound callback (secrets omitted are kept)",
        parameters=[ORGANIZATION_ID, CALLBACK_ID],
        request=CallbackInputSerializer,
        responses={200: CallbackOutputSerializer, **WRITE_ERRORS},
    )
    def put(self, request: Request, org_id: int, callback_id: int) -> Response:
        return self._update(request, org_id, callback_id, partial=False)

    @extend_schema(
        tags=TAGS,
        operation_id="organizations_callbacks_partial_update",
        summary="Change some fields of an outbound callback",
        parameters=[ORGANIZATION_ID, CALLBACK_ID],
        request=CallbackInputSerializer(partial=True),
        responses={200: CallbackOutputSerializer, **WRITE_ERRORS},
    )
    def patch(self, request: Request, org_id: int, callback_id: int) -> Response:
        return self._update(request, org_id, callback_id, partial=True)

    @extend_schema(
        tags=TAGS,
        operation_id="organizations_callbacks_destroy",
        summary="Delete an outbound callback",
        parameters=[ORGANIZATION_ID, CALLBACK_ID],
        request=None,
        responses={204: None, **READ_ERRORS},
    )
    def delete(self, request: Request, org_id: int, callback_id: int) -> Response:
        callbacks.callback_subscription_delete(
            subscription=_subscription(request, org_id, callback_id)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class CallbackTestApi(APIView):
    @extend_schema(
        tags=TAGS,
        operation_id="organizations_callbacks_test",
        summary="Queue a sample event to an outbound callback",
        parameters=[ORGANIZATION_ID, CALLBACK_ID],
        request=None,
        responses={
            202: OpenApiResponse(CallbackDeliveryOutputSerializer, description="Queued."),
            **WRITE_ERRORS,
        },
    )
    def post(self, request: Request, org_id: int, callback_id: int) -> Response:
        delivery = callbacks.callback_subscription_test(
            subscription=_subscription(request, org_id, callback_id)
        )
        return Response(
            CallbackDeliveryOutputSerializer(delivery).data, status=status.HTTP_202_ACCEPTED
        )


class CallbackDeliveryListApi(APIView):
    pagination_class = PagePagination

    @extend_schema(
        tags=TAGS,
        operation_id="organizations_callbacks_deliveries_list",
        summary="List a callback's deliveries, newest first",
        parameters=[ORGANIZATION_ID, CALLBACK_ID],
        responses={200: CallbackDeliveryOutputSerializer(many=True), **READ_ERRORS},
    )
    def get(self, request: Request, org_id: int, callback_id: int) -> Response:
        subscription = _subscription(request, org_id, callback_id)
        return paginated_response(
            request=request,
            view=self,
            queryset=callbacks.callback_delivery_list(user=request.user, subscription=subscription),
            serializer_class=CallbackDeliveryOutputSerializer,
        )


class CallbackDeliveryRetryApi(APIView):
    @extend_schema(
        tags=TAGS,
        operation_id="organizations_callbacks_deliveries_retry",
        summary="Send a failed callback delivery again",
        description="The delivery goes back to `pending` with its attempts reset and a worker "
        "sends it again with the same `webhook-id` (receivers can deduplicate). Only a `failed` "
        "delivery of an active callback can be retried: enable a disabled callback first. "
        "Poll the deliveries for its new state.",
        parameters=[ORGANIZATION_ID, CALLBACK_ID, DELIVERY_ID],
        request=None,
        responses={
            202: OpenApiResponse(CallbackDeliveryOutputSerializer, description="Queued again."),
            **WRITE_ERRORS,
        },
    )
    def post(self, request: Request, org_id: int, callback_id: int, delivery_id: int) -> Response:
        subscription = _subscription(request, org_id, callback_id)
        delivery = callbacks.callback_delivery_get(
            user=request.user, subscription=subscription, pk=delivery_id
        )
        delivery = callbacks.callback_delivery_retry(delivery=delivery)
        delivery.refresh_from_db()
        return Response(
            CallbackDeliveryOutputSerializer(delivery).data, status=status.HTTP_202_ACCEPTED
        )
