"""REST API v1 routes of SMS messages and caller lookup, mounted under `/api/v1/` by
`portal.urls` (namespace `messaging-api`). Every route names an organization, looked up through
the tenant selectors first: another tenant's is a 404."""

from django.urls import URLPattern, path

from integrations import messaging_apis

app_name = "messaging-api"

urlpatterns: list[URLPattern] = [
    path(
        "organizations/<int:org_id>/messages/",
        messaging_apis.MessageListCreateApi.as_view(),
        name="message-list",
    ),
    path(
        "organizations/<int:org_id>/messages/<int:message_id>/",
        messaging_apis.MessageDetailApi.as_view(),
        name="message-detail",
    ),
    path(
        "organizations/<int:org_id>/messages/<int:message_id>/resend/",
        messaging_apis.MessageResendApi.as_view(),
        name="message-resend",
    ),
    path(
        "organizations/<int:org_id>/lookup",
        messaging_apis.CallerLookupApi.as_view(),
        name="lookup",
    ),
]
