"""Web UI routes of integrations, mounted at the site root by `portal.urls` (namespace
`integrations`). Routes that name an organization or installation look it up through the
tenant-scoped selectors first, so foreign ids are 404."""

from django.urls import URLPattern, path

from integrations.views import (
    calls,
    catalog,
    delivery_log,
    inbox_events,
    installations,
    oauth,
    sms_numbers,
    user_mapping,
)

app_name = "integrations"

urlpatterns: list[URLPattern] = [
    # --- catalog, installations, OAuth connect, test connection ---------------------------
    path(
        "orgs/<int:org_id>/integrations/",
        catalog.organization_integrations,
        name="organization_integrations",
    ),
    path("orgs/<int:org_id>/integrations/catalog/", catalog.catalog, name="catalog"),
    path(
        "orgs/<int:org_id>/integrations/enable/<int:spec_id>/",
        installations.installation_create,
        name="installation_create",
    ),
    path("integrations/specs/", catalog.spec_list, name="spec_list"),
    path("integrations/specs/upload/", catalog.spec_upload, name="spec_upload"),
    path("integrations/specs/<int:spec_id>/", catalog.spec_detail, name="spec_detail"),
    path("integrations/review/", catalog.spec_review_list, name="spec_review_list"),
    path("integrations/review/<int:version_id>/", catalog.spec_review, name="spec_review"),
    path(
        "integrations/installations/<int:installation_id>/",
        installations.installation_detail,
        name="installation_detail",
    ),
    path(
        "integrations/installations/<int:installation_id>/edit/",
        installations.installation_edit,
        name="installation_edit",
    ),
    path(
        "integrations/installations/<int:installation_id>/upgrade/",
        installations.installation_upgrade,
        name="installation_upgrade",
    ),
    path(
        "integrations/installations/<int:installation_id>/disable/",
        installations.installation_delete,
        name="installation_delete",
    ),
    path(
        "integrations/installations/<int:installation_id>/test/",
        installations.installation_test,
        name="installation_test",
    ),
    path(
        "integrations/installations/<int:installation_id>/connect/",
        oauth.oauth_connect,
        name="oauth_connect",
    ),
    path(
        "integrations/installations/<int:installation_id>/disconnect/",
        oauth.oauth_disconnect,
        name="oauth_disconnect",
    ),
    path("integrations/oauth/callback/", oauth.oauth_callback, name="oauth_callback"),
    # --- end catalog ------------------------------------------------------------------------
    # --- user mapping, SMS numbers, delivery log ---------------------------------------------
    path(
        "integrations/installations/<int:installation_id>/users/",
        user_mapping.user_mapping,
        name="user_mapping",
    ),
    path(
        "integrations/installations/<int:installation_id>/users/fetch/",
        user_mapping.user_mapping_fetch,
        name="user_mapping_fetch",
    ),
    path(
        "integrations/installations/<int:installation_id>/users/fetch/status/",
        user_mapping.user_mapping_fetch_status,
        name="user_mapping_fetch_status",
    ),
    path(
        "integrations/installations/<int:installation_id>/numbers/",
        sms_numbers.sms_numbers,
        name="sms_numbers",
    ),
    path(
        "integrations/installations/<int:installation_id>/log/",
        delivery_log.delivery_log,
        name="delivery_log",
    ),
    path(
        "integrations/installations/<int:installation_id>/log/<int:entry_id>/",
        delivery_log.delivery_log_detail,
        name="delivery_log_detail",
    ),
    # --- end mapping --------------------------------------------------------------------------
    # --- calls and their CRM activities (call logging) --------------------------------------
    path("orgs/<int:org_id>/calls/", calls.calls, name="calls"),
    path("orgs/<int:org_id>/calls/review/", calls.calls_review, name="calls_review"),
    path(
        "orgs/<int:org_id>/calls/activities/<int:activity_id>/retry/",
        calls.call_activity_retry_view,
        name="call_activity_retry",
    ),
    path(
        "orgs/<int:org_id>/calls/activities/<int:activity_id>/resolve/",
        calls.call_activity_resolve_view,
        name="call_activity_resolve",
    ),
    # --- end calls ----------------------------------------------------------------------------
    # --- inbox events (accepted webhooks) and their replay -----------------------------------
    path("orgs/<int:org_id>/events/", inbox_events.inbox_events, name="inbox_events"),
    path(
        "orgs/<int:org_id>/events/<int:event_pk>/replay/",
        inbox_events.inbox_event_replay_view,
        name="inbox_event_replay",
    ),
    # --- end inbox events ---------------------------------------------------------------------
]
