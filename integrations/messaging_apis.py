"""REST API v1 for SMS messages and the caller lookup of an organization.

* ``POST /api/v1/organizations/<id>/messages/`` — send an SMS/MMS from one of the org's numbers
  (202: the message is queued; its `status` becomes `sent` with the provider's `messageid`, or
  `failed` with `error`);
* ``GET /api/v1/organizations/<id>/messages/`` — the org's messages, newest first, filtered by
  `sms_number` (id) and/or `conversation` (the external party's number);
* ``GET /api/v1/organizations/<id>/messages/<message_id>/`` — one message;
* ``POST /api/v1/organizations/<id>/messages/<message_id>/resend/`` — send a failed message
  again, or log a message whose CRM log failed to the CRM again (202);
* ``GET /api/v1/organizations/<id>/lookup?phone=…`` — the caller lookup of DESIGN 6.

Reads and writes go through the tenant selectors first: another tenant's organization, number
or message is a 404.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations.lookup import caller_lookup
from integrations.messaging import message_list, message_resend, message_send
from integrations.models import Message
from portal.api.pagination import PagePagination, paginated_response
from tenants import selectors as tenant_selectors
from tenants.apis import ORGANIZATION_ID, READ_ERRORS, WRITE_ERRORS

MESSAGE_ID = OpenApiParameter(
    "message_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Message id."
)


class MessageOutputSerializer(serializers.ModelSerializer):
    sms_number_e164 = serializers.CharField(
        source="sms_number.number", read_only=True, allow_null=True, default=None
    )

    class Meta:
        model = Message
        fields = (
            "id",
            "direction",
            "status",
            "sms_number",
            "sms_number_e164",
            "sender",
            "from_number",
            "to_number",
            "content",
            "media_urls",
            "messageid",
            "message_ref",
            "error",
            "created_at",
            "updated_at",
        )
        read_only_fields = fields


class MessageSendInputSerializer(serializers.Serializer):
    sms_number = serializers.IntegerField(help_text="Id of one of the organization's SMS numbers.")
    to = serializers.CharField(
        max_length=40, help_text="E.164, or national in the organization's default region."
    )
    content = serializers.CharField(
        allow_blank=True, default="", max_length=10000, help_text="The text (MMS: the caption)."
    )
    media_url = serializers.URLField(
        required=False, allow_null=True, default=None, help_text="A file URL: sends an MMS."
    )
    sender = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Id of the PBX user sending (one of the number's users).",
    )


class LookupContactOutputSerializer(serializers.Serializer):
    installation_id = serializers.IntegerField()
    integration = serializers.CharField(help_text="The installation's label or spec name.")
    contact_id = serializers.CharField(required=False)
    contact_name = serializers.CharField(required=False)
    contact_email = serializers.CharField(required=False)
    contact_phone = serializers.CharField(required=False)
    contact_company = serializers.CharField(required=False)
    contact_url = serializers.CharField(allow_null=True, help_text="A link to the CRM record.")


class LookupSourceOutputSerializer(serializers.Serializer):
    installation_id = serializers.IntegerField()
    name = serializers.CharField()
    spec_id = serializers.CharField()
    status = serializers.ChoiceField(choices=["ok", "cached", "timeout", "error"])
    count = serializers.IntegerField()
    duration_ms = serializers.IntegerField()
    error = serializers.CharField(allow_blank=True)


class LookupOutputSerializer(serializers.Serializer):
    phone = serializers.CharField(help_text="The number looked up, in E.164.")
    contacts = LookupContactOutputSerializer(
        many=True, help_text="Every match of every CRM (other record fields may be present)."
    )
    sources = LookupSourceOutputSerializer(many=True, help_text="How each CRM answered.")


class MessageListCreateApi(APIView):
    pagination_class = PagePagination

    @extend_schema(
        tags=["messages"],
        operation_id="organizations_messages_list",
        summary="An organization's SMS/MMS messages, newest first",
        parameters=[
            ORGANIZATION_ID,
            OpenApiParameter(
                "sms_number", OpenApiTypes.INT, OpenApiParameter.QUERY, description="SMS number id."
            ),
            OpenApiParameter(
                "conversation",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                description="The external party's number: one conversation.",
            ),
        ],
        responses={200: MessageOutputSerializer(many=True), **READ_ERRORS},
    )
    def get(self, request: Request, org_id: int) -> Response:
        organization = tenant_selectors.organization_get(user=request.user, pk=org_id)
        sms_number = None
        if request.query_params.get("sms_number"):
            raw = request.query_params["sms_number"]
            if not raw.isdigit():
                raise serializers.ValidationError({"sms_number": ["Expected a number id."]})
            sms_number = tenant_selectors.sms_number_get(
                user=request.user, organization=organization, pk=raw
            )
        messages = message_list(
            user=request.user,
            organization=organization,
            sms_number=sms_number,
            conversation=request.query_params.get("conversation") or None,
        )
        return paginated_response(
            request=request, view=self, queryset=messages, serializer_class=MessageOutputSerializer
        )

    @extend_schema(
        tags=["messages"],
        operation_id="organizations_messages_send",
        summary="Send an SMS (or an MMS with media_url)",
        description="The message is stored as queued and sent by a worker through the number's "
        "SMS integration (SendMessage, or SendFile for an MMS). Poll the message: it becomes "
        "`sent` with the provider's `messageid`, then `delivered` if the provider reports it, "
        "or `failed` with an `error` that says what to fix.",
        parameters=[ORGANIZATION_ID],
        request=MessageSendInputSerializer,
        responses={202: MessageOutputSerializer, **WRITE_ERRORS},
    )
    def post(self, request: Request, org_id: int) -> Response:
        organization = tenant_selectors.organization_get(user=request.user, pk=org_id)
        serializer = MessageSendInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data: dict[str, Any] = serializer.validated_data
        sms_number = tenant_selectors.sms_number_get(
            user=request.user, organization=organization, pk=data["sms_number"]
        )
        sender = None
        if data.get("sender") is not None:
            sender = tenant_selectors.pbx_user_get(
                user=request.user, organization=organization, pk=data["sender"]
            )
        message = message_send(
            organization=organization,
            sms_number=sms_number,
            sender=sender,
            to=data["to"],
            content=data["content"],
            media_url=data.get("media_url"),
        )
        message.refresh_from_db()
        return Response(MessageOutputSerializer(message).data, status=status.HTTP_202_ACCEPTED)


class MessageDetailApi(APIView):
    @extend_schema(
        tags=["messages"],
        operation_id="organizations_messages_retrieve",
        summary="One message",
        parameters=[ORGANIZATION_ID, MESSAGE_ID],
        responses={200: MessageOutputSerializer, **READ_ERRORS},
    )
    def get(self, request: Request, org_id: int, message_id: int) -> Response:
        organization = tenant_selectors.organization_get(user=request.user, pk=org_id)
        message = get_object_or_404(
            message_list(user=request.user, organization=organization), pk=message_id
        )
        return Response(MessageOutputSerializer(message).data)


class MessageResendApi(APIView):
    @extend_schema(
        tags=["messages"],
        operation_id="organizations_messages_resend",
        summary="Send a failed message again (or re-run its failed CRM log)",
        description="A `failed` outbound message goes back to `queued` with its attempts reset "
        "and a worker sends it again through the number's SMS integration. A sent or received "
        "message whose CRM log failed for good is logged again to the CRMs missing it. Anything "
        "else (an inbound message, a message not failed) is a 400 saying why. Poll the message "
        "for its new `status`.",
        parameters=[ORGANIZATION_ID, MESSAGE_ID],
        request=None,
        responses={202: MessageOutputSerializer, **WRITE_ERRORS},
    )
    def post(self, request: Request, org_id: int, message_id: int) -> Response:
        organization = tenant_selectors.organization_get(user=request.user, pk=org_id)
        message = get_object_or_404(
            message_list(user=request.user, organization=organization), pk=message_id
        )
        message = message_resend(message=message)
        message.refresh_from_db()
        return Response(MessageOutputSerializer(message).data, status=status.HTTP_202_ACCEPTED)


class CallerLookupApi(APIView):
    @extend_schema(
        tags=["lookup"],
        operation_id="organizations_lookup",
        summary="Who is calling: contacts of every CRM of the organization",
        description="Asks every active CRM integration's FindContact concurrently, each within "
        "LOOKUP_TIMEOUT_SECONDS; a CRM that is slow or failing appears in `sources` with its "
        "error instead of failing the answer. Answers are cached per integration and number for "
        "LOOKUP_CACHE_SECONDS (status `cached`).",
        parameters=[
            ORGANIZATION_ID,
            OpenApiParameter(
                "phone",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                required=True,
                description="The caller's number: E.164, or national in the org's region.",
            ),
        ],
        responses={200: LookupOutputSerializer, **WRITE_ERRORS},
    )
    def get(self, request: Request, org_id: int) -> Response:
        organization = tenant_selectors.organization_get(user=request.user, pk=org_id)
        phone = request.query_params.get("phone", "")
        if not phone.strip():
            raise serializers.ValidationError({"phone": ["Give the number to look up."]})
        result = caller_lookup(organization=organization, phone=phone)
        return Response(
            {
                "phone": result.phone,
                "contacts": result.contacts,
                "sources": [asdict(source) for source in result.sources],
            }
        )
