"""Web UI routes of integrations, mounted at the site root by `portal.urls` (namespace
`integrations`). Routes that name an organization or installation look it up through the
tenant-scoped selectors first, so foreign ids are 404."""

from django.urls import URLPattern, path  # noqa: F401

app_name = "integrations"

urlpatterns: list[URLPattern] = [
    # --- catalog, installations, OAuth connect, test connection ---------------------------
    # --- end catalog ------------------------------------------------------------------------
    # --- user mapping, SMS numbers, delivery log ---------------------------------------------
    # --- end mapping --------------------------------------------------------------------------
]
