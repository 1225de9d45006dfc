"""REST API v1 routes of calls and their CRM activities, mounted under `/api/v1/` by
`portal.urls` (namespace `calls-api`). Every route names an organization, looked up through the
tenant selectors first: another tenant's is a 404."""

from django.urls import URLPattern, path

from integrations import call_apis

app_name = "calls-api"

urlpatterns: list[URLPattern] = [
    path("organizations/<int:org_id>/calls/", call_apis.CallListApi.as_view(), name="call-list"),
    path(
        "organizations/<int:org_id>/calls/<int:call_pk>/",
        call_apis.CallDetailApi.as_view(),
        name="call-detail",
    ),
    path(
        "organizations/<int:org_id>/call-activities/",
        call_apis.CallActivityListApi.as_view(),
        name="call-activity-list",
    ),
    path(
        "organizations/<int:org_id>/call-activities/<int:activity_pk>/retry",
        call_apis.CallActivityRetryApi.as_view(),
        name="call-activity-retry",
    ),
    path(
        "organizations/<int:org_id>/call-activities/<int:activity_pk>/resolve",
        call_apis.CallActivityResolveApi.as_view(),
        name="call-activity-resolve",
    ),
]
