"""Inbound webhook routes, mounted at ``api/v1/hooks/`` by `portal.urls` (namespace `hooks`).

Add a sender's routes here (``crm/<installation key>/clicktocall``, ...), each a subclass of
`integrations.webhooks.base.WebhookView`.
"""

from django.urls import URLPattern, path

from integrations.webhooks.crm import CrmHookView
from integrations.webhooks.pbx import PbxWebhookView

app_name = "hooks"

urlpatterns: list[URLPattern] = [
    path("pbx/<str:org_key>/<str:event>", PbxWebhookView.as_view(), name="pbx"),
    path("pbx/<str:org_key>/<str:event>/", PbxWebhookView.as_view(), name="pbx-slash"),
    # Click-to-call and call control (Zoho PhoneBridge): integrations/webhooks/crm.py.
    path("crm/<str:installation_key>/<str:action>", CrmHookView.as_view(), name="crm"),
    path("crm/<str:installation_key>/<str:action>/", CrmHookView.as_view(), name="crm-slash"),
]
