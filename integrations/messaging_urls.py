"""Web UI routes of SMS conversations, mounted at the site root by `portal.urls` (namespace
`messaging`). Each looks its organization and number up through the tenant selectors."""

from django.urls import URLPattern, path

from integrations.views import messages

app_name = "messaging"

urlpatterns: list[URLPattern] = [
    path("orgs/<int:org_id>/conversations/", messages.conversations, name="conversations"),
    path(
        "orgs/<int:org_id>/conversations/<int:sms_number_id>/",
        messages.conversation_detail,
        name="conversation_detail",
    ),
    path(
        "orgs/<int:org_id>/conversations/<int:sms_number_id>/messages/<int:message_id>/resend/",
        messages.message_resend_view,
        name="message_resend",
    ),
]
