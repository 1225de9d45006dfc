"""REST API v1 of an organization's inbox events (the accepted webhooks).

* ``GET /api/v1/organizations/<id>/events/?state=`` — events, newest first (``failed`` to find
  what to run again);
* ``POST /api/v1/organizations/<id>/events/<pk>/replay/`` — run a failed or ignored event again.

The raw body, query and headers are never part of the output: only what an admin needs to
find and re-run an event. Everything is looked up through the tenant selectors first: another
tenant's ids are a 404.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations.inbox import inbox_event_replay
from integrations.inbox_selectors import (
    inbox_event_get,
    inbox_event_list,
    inbox_event_replayable,
)
from integrations.models import InboxEvent
from portal.api.pagination import PagePagination, paginated_response, query_choice
from tenants import selectors as tenant_selectors
from tenants.apis import ORGANIZATION_ID, READ_ERRORS, WRITE_ERRORS

EVENT_PK = OpenApiParameter(
    "event_pk", OpenApiTypes.INT, OpenApiParameter.PATH, description="Inbox event id."
)
REPLAY_REFUSED = "Only failed or ignored events can be run again."


class InboxEventOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = InboxEvent
        fields = (
            "id",
            "source",
            "event_type",
            "state",
            "attempts",
            "last_error",
            "received_at",
            "processed_at",
        )
        read_only_fields = fields


class InboxEventListApi(APIView):
    pagination_class = PagePagination

    @extend_schema(
        tags=["events"],
        operation_id="organizations_events_list",
        summary="An organization's accepted webhooks, newest first",
        parameters=[
            ORGANIZATION_ID,
            OpenApiParameter(
                "state",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                enum=list(InboxEvent.State.values),
                description="Only events in this state (failed or ignored: to run again).",
            ),
        ],
        responses={200: InboxEventOutputSerializer(many=True), **READ_ERRORS},
    )
    def get(self, request: Request, org_id: int) -> Response:
        organization = tenant_selectors.organization_get(user=request.user, pk=org_id)
        state = query_choice(request, "state", list(InboxEvent.State.values))
        events = inbox_event_list(user=request.user, organization=organization, state=state)
        return paginated_response(
            request=request,
            view=self,
            queryset=events,
            serializer_class=InboxEventOutputSerializer,
        )


class InboxEventReplayApi(APIView):
    @extend_schema(
        tags=["events"],
        operation_id="organizations_events_replay",
        summary="Run a failed or ignored event again",
        description="The event goes back to `received` and a worker processes it again. "
        "Poll the event list for its new state. Any other state is a 400.",
        parameters=[ORGANIZATION_ID, EVENT_PK],
        request=None,
        responses={202: InboxEventOutputSerializer, **WRITE_ERRORS},
    )
    def post(self, request: Request, org_id: int, event_pk: int) -> Response:
        organization = tenant_selectors.organization_get(user=request.user, pk=org_id)
        event = inbox_event_get(user=request.user, organization=organization, pk=event_pk)
        if not inbox_event_replayable(event=event):
            raise serializers.ValidationError([REPLAY_REFUSED])
        event = inbox_event_replay(event=event)
        return Response(InboxEventOutputSerializer(event).data, status=status.HTTP_202_ACCEPTED)
