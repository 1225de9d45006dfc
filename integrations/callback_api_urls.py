"""REST API routes of outbound callbacks, mounted under `/api/v1/` by `portal.urls`
(namespace `callbacks-api`)."""

from django.urls import URLPattern, path

from integrations import callback_apis

app_name = "callbacks-api"

urlpatterns: list[URLPattern] = [
    path(
        "organizations/<int:org_id>/callbacks/",
        callback_apis.CallbackListCreateApi.as_view(),
        name="list",
    ),
    path(
        "organizations/<int:org_id>/callbacks/<int:callback_id>/",
        callback_apis.CallbackDetailApi.as_view(),
        name="detail",
    ),
    path(
        "organizations/<int:org_id>/callbacks/<int:callback_id>/test/",
        callback_apis.CallbackTestApi.as_view(),
        name="test",
    ),
    path(
        "organizations/<int:org_id>/callbacks/<int:callback_id>/deliveries/",
        callback_apis.CallbackDeliveryListApi.as_view(),
        name="deliveries",
    ),
    path(
        "organizations/<int:org_id>/callbacks/<int:callback_id>/deliveries/<int:delivery_id>/retry/",
        callback_apis.CallbackDeliveryRetryApi.as_view(),
        name="delivery-retry",
    ),
]
