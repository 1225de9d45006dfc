"""Web UI routes of the tenant data, mounted at the site root by `portal.urls`.

Every route below `orgs/<org_id>/` looks the organization up through
`tenants.selectors` first, so another tenant's ids give 404 on every one of them
(`tests/tenants/test_ui_isolation.py` walks this list).
"""

from django.urls import URLPattern, path

from tenants import views

urlpatterns: list[URLPattern] = [
    path("", views.dashboard, name="dashboard"),
    path("orgs/", views.organization_list, name="organization_list"),
    path("orgs/new/", views.organization_create, name="organization_create"),
    path("orgs/<int:org_id>/", views.organization_detail, name="organization_detail"),
    path("orgs/<int:org_id>/edit/", views.organization_edit, name="organization_edit"),
    path("orgs/<int:org_id>/delete/", views.organization_delete, name="organization_delete"),
    path(
        "orgs/<int:org_id>/webhook-secret/rotate/",
        views.organization_rotate_webhook_secret,
        name="organization_rotate_webhook_secret",
    ),
    path("orgs/<int:org_id>/users/new/", views.pbx_user_create, name="pbx_user_create"),
    path("orgs/<int:org_id>/users/import/", views.pbx_users_import, name="pbx_users_import"),
    path(
        "orgs/<int:org_id>/users/sample.csv",
        views.pbx_users_sample_csv,
        name="pbx_users_sample_csv",
    ),
    path(
        "orgs/<int:org_id>/users/<int:user_id>/edit/",
        views.pbx_user_edit,
        name="pbx_user_edit",
    ),
    path(
        "orgs/<int:org_id>/users/<int:user_id>/delete/",
        views.pbx_user_delete,
        name="pbx_user_delete",
    ),
    path("orgs/<int:org_id>/numbers/new/", views.sms_number_create, name="sms_number_create"),
    path(
        "orgs/<int:org_id>/numbers/<int:number_id>/edit/",
        views.sms_number_edit,
        name="sms_number_edit",
    ),
    path(
        "orgs/<int:org_id>/numbers/<int:number_id>/assign/",
        views.sms_number_assign,
        name="sms_number_assign",
    ),
    path(
        "orgs/<int:org_id>/numbers/<int:number_id>/delete/",
        views.sms_number_delete,
        name="sms_number_delete",
    ),
]
