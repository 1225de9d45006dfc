"""REST API v1, mounted at `/api/v1/` by `portal.urls`."""

from django.urls import URLPattern, path

from tenants import apis

app_name = "api-v1"

urlpatterns: list[URLPattern] = [
    path("organizations/", apis.OrganizationListCreateApi.as_view(), name="organization-list"),
    path(
        "organizations/<int:org_id>/",
        apis.OrganizationDetailApi.as_view(),
        name="organization-detail",
    ),
    path(
        "organizations/<int:org_id>/webhook-secret/rotate/",
        apis.OrganizationWebhookSecretRotateApi.as_view(),
        name="organization-webhook-secret-rotate",
    ),
    path(
        "organizations/<int:org_id>/users/",
        apis.PbxUserListCreateApi.as_view(),
        name="pbx-user-list",
    ),
    path(
        "organizations/<int:org_id>/users/<int:pbx_user_id>/",
        apis.PbxUserDetailApi.as_view(),
        name="pbx-user-detail",
    ),
    path(
        "organizations/<int:org_id>/sms-numbers/",
        apis.SmsNumberListCreateApi.as_view(),
        name="sms-number-list",
    ),
    path(
        "organizations/<int:org_id>/sms-numbers/<int:sms_number_id>/",
        apis.SmsNumberDetailApi.as_view(),
        name="sms-number-detail",
    ),
]
