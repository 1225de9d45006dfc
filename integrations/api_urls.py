"""REST API v1 routes of integrations, mounted under `/api/v1/` by `portal.urls`
(namespace `integrations-api`). `tests/integrations/portal/test_api_isolation.py` checks that
every route and method here is in its isolation table."""

from django.urls import URLPattern, path

from integrations import apis

app_name = "integrations-api"

urlpatterns: list[URLPattern] = [
    path(
        "organizations/<int:org_id>/catalog/",
        apis.CatalogApi.as_view(),
        name="catalog",
    ),
    path("specs/", apis.SpecListApi.as_view(), name="spec-list"),
    path("specs/upload/", apis.SpecUploadApi.as_view(), name="spec-upload"),
    path("specs/<int:spec_id>/", apis.SpecDetailApi.as_view(), name="spec-detail"),
    path(
        "organizations/<int:org_id>/installations/",
        apis.InstallationListCreateApi.as_view(),
        name="installation-list",
    ),
    path(
        "installations/<int:installation_id>/",
        apis.InstallationDetailApi.as_view(),
        name="installation-detail",
    ),
    path(
        "installations/<int:installation_id>/test/",
        apis.InstallationTestApi.as_view(),
        name="installation-test",
    ),
    path(
        "installations/<int:installation_id>/oauth/connect/",
        apis.InstallationOAuthConnectApi.as_view(),
        name="installation-oauth-connect",
    ),
    path(
        "installations/<int:installation_id>/oauth/disconnect/",
        apis.InstallationOAuthDisconnectApi.as_view(),
        name="installation-oauth-disconnect",
    ),
    path(
        "installations/<int:installation_id>/upgrade/",
        apis.InstallationUpgradeApi.as_view(),
        name="installation-upgrade",
    ),
    path(
        "installations/<int:installation_id>/user-mapping/",
        apis.UserMappingListApi.as_view(),
        name="user-mapping-list",
    ),
    path(
        "installations/<int:installation_id>/user-mapping/<int:pbx_user_id>/",
        apis.UserMappingDetailApi.as_view(),
        name="user-mapping-detail",
    ),
    path(
        "installations/<int:installation_id>/crm-users/",
        apis.CrmUserListApi.as_view(),
        name="crm-user-list",
    ),
    path(
        "installations/<int:installation_id>/crm-users/fetch/",
        apis.CrmUserFetchApi.as_view(),
        name="crm-user-fetch",
    ),
    path(
        "installations/<int:installation_id>/crm-users/fetch/<int:fetch_id>/",
        apis.CrmUserFetchDetailApi.as_view(),
        name="crm-user-fetch-detail",
    ),
    path(
        "installations/<int:installation_id>/sms-numbers/",
        apis.SmsNumberListApi.as_view(),
        name="installation-sms-number-list",
    ),
    path(
        "installations/<int:installation_id>/sms-numbers/<int:sms_number_id>/",
        apis.SmsNumberBindApi.as_view(),
        name="installation-sms-number-detail",
    ),
    path(
        "installations/<int:installation_id>/log/",
        apis.DeliveryLogListApi.as_view(),
        name="delivery-log-list",
    ),
    path("log/<int:entry_id>/", apis.DeliveryLogDetailApi.as_view(), name="delivery-log-detail"),
]
