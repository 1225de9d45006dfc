"""REST API v1 routes of inbox events (accepted webhooks), mounted under `/api/v1/` by
`portal.urls` (namespace `events-api`). Every route names an organization, looked up through
the tenant selectors first: another tenant's is a 404."""

from django.urls import URLPattern, path

from integrations import inbox_apis

app_name = "events-api"

urlpatterns: list[URLPattern] = [
    path(
        "organizations/<int:org_id>/events/",
        inbox_apis.InboxEventListApi.as_view(),
        name="event-list",
    ),
    path(
        "organizations/<int:org_id>/events/<int:event_pk>/replay/",
        inbox_apis.InboxEventReplayApi.as_view(),
        name="event-replay",
    ),
]
