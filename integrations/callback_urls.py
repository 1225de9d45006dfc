"""Web UI routes of outbound callbacks, mounted at the site root by `portal.urls` (namespace
`callbacks`). Every route looks the organization (and the callback) up through the tenant
selectors first, so another tenant's ids give 404 on every one of them."""

from django.urls import URLPattern, path

from integrations.views import callbacks

app_name = "callbacks"

urlpatterns: list[URLPattern] = [
    path("orgs/<int:org_id>/callbacks/", callbacks.callback_list, name="list"),
    path("orgs/<int:org_id>/callbacks/new/", callbacks.callback_create, name="create"),
    path(
        "orgs/<int:org_id>/callbacks/<int:callback_id>/", callbacks.callback_detail, name="detail"
    ),
    path(
        "orgs/<int:org_id>/callbacks/<int:callback_id>/edit/", callbacks.callback_edit, name="edit"
    ),
    path(
        "orgs/<int:org_id>/callbacks/<int:callback_id>/delete/",
        callbacks.callback_delete,
        name="delete",
    ),
    path(
        "orgs/<int:org_id>/callbacks/<int:callback_id>/test/", callbacks.callback_test, name="test"
    ),
    path(
        "orgs/<int:org_id>/callbacks/<int:callback_id>/deliveries/<int:delivery_id>/retry/",
        callbacks.callback_delivery_retry,
        name="delivery_retry",
    ),
]
