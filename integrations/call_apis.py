"""REST API v1 of an organization's calls and their CRM activities.

* ``GET /api/v1/organizations/<id>/calls/`` — recent calls, newest first, each with its
  activity per CRM integration;
* ``GET /api/v1/organizations/<id>/calls/<call_pk>/`` — one call;
* ``GET /api/v1/organizations/<id>/call-activities/?state=`` — activities (``failed`` to find
  what to retry, ``held`` for the ones waiting for a contact);
* ``POST /api/v1/organizations/<id>/call-activities/<pk>/retry`` — run a failed activity again;
* ``POST /api/v1/organizations/<id>/call-activities/<pk>/resolve`` — log a held activity to
  the contact picked among its candidates.

Everything is looked up through the tenant selectors first: another tenant's ids are a 404.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations.call_logging import (
    call_activity_get,
    call_activity_list,
    call_activity_resolve,
    call_activity_retry,
    call_get,
    call_list,
)
from integrations.models import Call, CallActivity
from portal.api.pagination import PagePagination, paginated_response, query_choice
from tenants import selectors as tenant_selectors
from tenants.apis import ORGANIZATION_ID, READ_ERRORS, WRITE_ERRORS

CALL_PK = OpenApiParameter(
    "call_pk", OpenApiTypes.INT, OpenApiParameter.PATH, description="Call id (ours)."
)
ACTIVITY_PK = OpenApiParameter(
    "activity_pk", OpenApiTypes.INT, OpenApiParameter.PATH, description="Call activity id."
)


class CallActivityOutputSerializer(serializers.ModelSerializer):
    installation_name = serializers.SerializerMethodField(
        help_text="The integration's label or spec name."
    )
    call_id = serializers.CharField(source="call.call_id", read_only=True)
    candidates = serializers.ListField(
        child=serializers.DictField(),
        read_only=True,
        help_text="Contacts found for the caller (contact_id, contact_name, …).",
    )
    other_activity_ids = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = CallActivity
        fields = (
            "id",
            "installation",
            "installation_name",
            "call_id",
            "state",
            "activity_id",
            "other_activity_ids",
            "contact_id",
            "candidates",
            "recording_uploaded",
            "last_error",
            "created_at",
            "updated_at",
        )
        read_only_fields = fields

    def get_installation_name(self, activity: CallActivity) -> str:
        installation = activity.installation
        return installation.label or installation.spec_version.spec.name


class CallOutputSerializer(serializers.ModelSerializer):
    data = serializers.DictField(
        read_only=True,
        help_text="The call merged from its events: direction, caller_number, caller_name, "
        "called_number, extension, start, answer, end (ISO 8601 UTC), duration, recording_url, "
        "phone (the external party).",
    )
    activities = CallActivityOutputSerializer(many=True, read_only=True)

    class Meta:
        model = Call
        fields = ("id", "call_id", "status", "data", "activities", "created_at", "updated_at")
        read_only_fields = fields


class CallActivityResolveInputSerializer(serializers.Serializer):
    contact_id = serializers.CharField(
        max_length=200, help_text="One of the activity's candidates' contact_id."
    )


class CallListApi(APIView):
    pagination_class = PagePagination

    @extend_schema(
        tags=["calls"],
        operation_id="organizations_calls_list",
        summary="An organization's calls, newest first, with their CRM activities",
        parameters=[ORGANIZATION_ID],
        responses={200: CallOutputSerializer(many=True), **READ_ERRORS},
    )
    def get(self, request: Request, org_id: int) -> Response:
        organization = tenant_selectors.organization_get(user=request.user, pk=org_id)
        calls = call_list(user=request.user, organization=organization)
        return paginated_response(
            request=request, view=self, queryset=calls, serializer_class=CallOutputSerializer
        )


class CallDetailApi(APIView):
    @extend_schema(
        tags=["calls"],
        operation_id="organizations_calls_retrieve",
        summary="One call with its CRM activities",
        parameters=[ORGANIZATION_ID, CALL_PK],
        responses={200: CallOutputSerializer, **READ_ERRORS},
    )
    def get(self, request: Request, org_id: int, call_pk: int) -> Response:
        organization = tenant_selectors.organization_get(user=request.user, pk=org_id)
        call = call_get(user=request.user, organization=organization, pk=call_pk)
        return Response(CallOutputSerializer(call).data)


class CallActivityListApi(APIView):
    pagination_class = PagePagination

    @extend_schema(
        tags=["calls"],
        operation_id="organizations_call_activities_list",
        summary="An organization's call activities, newest first",
        parameters=[
            ORGANIZATION_ID,
            OpenApiParameter(
                "state",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                enum=list(CallActivity.State.values),
                description="Only activities in this state (failed: to retry; held: to resolve).",
            ),
        ],
        responses={200: CallActivityOutputSerializer(many=True), **READ_ERRORS},
    )
    def get(self, request: Request, org_id: int) -> Response:
        organization = tenant_selectors.organization_get(user=request.user, pk=org_id)
        state = query_choice(request, "state", list(CallActivity.State.values))
        activities = call_activity_list(user=request.user, organization=organization, state=state)
        return paginated_response(
            request=request,
            view=self,
            queryset=activities,
            serializer_class=CallActivityOutputSerializer,
        )


def _activity_response(activity: CallActivity) -> Response:
    activity.refresh_from_db()
    return Response(CallActivityOutputSerializer(activity).data, status=status.HTTP_202_ACCEPTED)


class CallActivityRetryApi(APIView):
    @extend_schema(
        tags=["calls"],
        operation_id="organizations_call_activities_retry",
        summary="Run a failed call activity again",
        description="The activity goes back to `pending` and a worker logs the call again "
        "(only what is missing is sent: an activity already created is updated, not created "
        "twice). Poll the activity for its new state.",
        parameters=[ORGANIZATION_ID, ACTIVITY_PK],
        request=None,
        responses={202: CallActivityOutputSerializer, **WRITE_ERRORS},
    )
    def post(self, request: Request, org_id: int, activity_pk: int) -> Response:
        organization = tenant_selectors.organization_get(user=request.user, pk=org_id)
        activity = call_activity_get(user=request.user, organization=organization, pk=activity_pk)
        return _activity_response(call_activity_retry(activity=activity))


class CallActivityResolveApi(APIView):
    @extend_schema(
        tags=["calls"],
        operation_id="organizations_call_activities_resolve",
        summary="Log a held call activity to the contact picked",
        description="For an activity held because several contacts matched (match policy "
        "`review`): `contact_id` must be one of its `candidates`. The activity is then written.",
        parameters=[ORGANIZATION_ID, ACTIVITY_PK],
        request=CallActivityResolveInputSerializer,
        responses={202: CallActivityOutputSerializer, **WRITE_ERRORS},
    )
    def post(self, request: Request, org_id: int, activity_pk: int) -> Response:
        organization = tenant_selectors.organization_get(user=request.user, pk=org_id)
        activity = call_activity_get(user=request.user, organization=organization, pk=activity_pk)
        serializer = CallActivityResolveInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data: dict[str, Any] = serializer.validated_data
        return _activity_response(
            call_activity_resolve(activity=activity, contact_id=data["contact_id"])
        )
