"""OAuth connect end to end against the sandbox CRMs: Connect → authorize → callback → tokens
stored encrypted → Install → "Connected as …"; after expiry a call refreshes exactly once;
forged, reused, expired and other users' states are refused; Disconnect revokes and wipes."""

from __future__ import annotations

import datetime as dt
import urllib.parse
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from integrations.models import Installation, OAuthState
from integrations.sandbox.generic_crm import DEFAULT_CLIENT_ID as CRM_CLIENT_ID
from integrations.sandbox.generic_crm import DEFAULT_CLIENT_SECRET as CRM_CLIENT_SECRET
from integrations.sandbox.zoho import DEFAULT_CLIENT_ID as ZOHO_CLIENT_ID
from integrations.sandbox.zoho import DEFAULT_CLIENT_SECRET as ZOHO_CLIENT_SECRET
from integrations.services import (
    OAuthStateError,
    installation_create,
    installation_test,
    oauth_connect_finish,
    oauth_connect_start,
    oauth_disconnect,
)
from tests.integrations.portal.portal_support import (
    API_KEY_SECRET,
    approved_version,
    bearer_crm_document,
    builtin_version,
    connect_through_views,
    follow_authorize,
    raw_installation_column,
    token_grants,
)
from tests.tenants.conftest import Tenant

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _loopback(settings: Any) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    settings.PUBLIC_BASE_URL = "http://testserver"


def _messages(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def crm_installation(tenant_a: Tenant, crm_server: Any) -> Installation:
    crm_server.configure(auto_approve=True)
    return installation_create(
        user=tenant_a.reseller,
        organization=tenant_a.org,
        spec_version=builtin_version("example-crm"),
        properties={"Instance URL": crm_server.url, "Client ID": CRM_CLIENT_ID},
        secret_properties={"Client Secret": CRM_CLIENT_SECRET},
    )


@pytest.fixture
def zoho_installation(tenant_a: Tenant, zoho_server: Any) -> Installation:
    zoho_server.configure(auto_approve=True)
    return installation_create(
        user=tenant_a.reseller,
        organization=tenant_a.org,
        spec_version=builtin_version("zoho-phonebridge"),
        properties={
            "Accounts URL": zoho_server.url,
            "API Domain": zoho_server.url,
            "Client ID": ZOHO_CLIENT_ID,
        },
        secret_properties={
            "Client Secret": ZOHO_CLIENT_SECRET,
            "Callback Token": "zoho-callback-token",
        },
    )


def test_oauth2_installation_starts_not_connected(crm_installation: Installation) -> None:
    assert crm_installation.status == Installation.Status.NOT_CONNECTED
    assert crm_installation.tokens is None


def test_generic_crm_connect_end_to_end_then_refreshes_once_after_expiry(
    client: Client, tenant_a: Tenant, crm_server: Any, crm_installation: Installation
) -> None:
    client.force_login(tenant_a.reseller)

    response = connect_through_views(client, crm_installation.pk)

    assert response.status_code == 302
    assert response["Location"] == reverse(
        "integrations:installation_detail", args=[crm_installation.pk]
    )
    assert _messages(response) == ["Connected as Alice Agent <alice@crm.example>."]
    crm_installation.refresh_from_db()
    assert crm_installation.status == Installation.Status.ACTIVE
    assert crm_installation.connected_as == "Alice Agent <alice@crm.example>"
    access_token = crm_installation.tokens["access_token"]
    refresh_token = crm_installation.tokens["refresh_token"]
    assert access_token.startswith("crm_")
    # The token response's instance_url is kept as an installation value.
    assert crm_installation.tokens["extra"] == {"instance_url": crm_server.url}
    raw = raw_installation_column(crm_installation.pk, "tokens")
    assert access_token not in raw and refresh_token not in raw
    assert token_grants(crm_server, "/oauth/token") == ["authorization_code"]

    page = client.get(response["Location"]).content.decode()
    assert "Connected as Alice Agent" in page
    assert access_token not in page and CRM_CLIENT_SECRET not in page

    crm_server.advance_clock(crm_server.token_lifetime + 60)
    first = installation_test(installation=crm_installation)
    second = installation_test(installation=crm_installation)

    assert first.ok and second.ok, (first.error, second.error)
    assert token_grants(crm_server, "/oauth/token") == ["authorization_code", "refresh_token"]
    crm_installation.refresh_from_db()
    assert crm_installation.tokens["access_token"] != access_token
    assert crm_installation.tokens["refresh_token"] == refresh_token


def test_zoho_connect_runs_install_and_tells_who_is_connected(
    client: Client, tenant_a: Tenant, zoho_server: Any, zoho_installation: Installation
) -> None:
    client.force_login(tenant_a.reseller)

    response = connect_through_views(client, zoho_installation.pk)

    assert _messages(response) == ["Connected as Alice Admin <alice@zoho.example>."]
    zoho_installation.refresh_from_db()
    assert zoho_installation.status == Installation.Status.ACTIVE
    assert zoho_server.integrated is True
    registered = zoho_server.call_control["urls"]["clicktocallurl"]
    assert registered == f"http://testserver/api/v1/hooks/crm/{zoho_installation.key}/clicktocall"
    assert zoho_installation.tokens["extra"] == {"api_domain": zoho_server.url}
    # The tokens are encrypted at rest: neither one is in the stored column.
    tokens = dict(zoho_installation.tokens)
    raw = raw_installation_column(zoho_installation.pk, "tokens")
    assert raw and tokens["access_token"] not in raw and tokens["refresh_token"] not in raw

    zoho_server.advance_clock(zoho_server.token_lifetime + 60)
    result = installation_test(installation=zoho_installation)

    assert result.ok, result.error
    assert [r["user_name"] for r in result.records][:1] == ["Alice Admin"]
    assert token_grants(zoho_server, "/oauth/v2/token") == ["authorization_code", "refresh_token"]
    zoho_installation.refresh_from_db()
    refreshed = zoho_installation.tokens["access_token"]
    assert refreshed != tokens["access_token"]
    assert refreshed not in raw_installation_column(zoho_installation.pk, "tokens")


def test_connected_as_prefers_the_crm_user_with_the_admins_email(
    client: Client, tenant_a: Tenant, crm_server: Any, crm_installation: Installation
) -> None:
    tenant_a.reseller.email = "Bob@CRM.example"
    tenant_a.reseller.save()
    client.force_login(tenant_a.reseller)

    connect_through_views(client, crm_installation.pk)

    crm_installation.refresh_from_db()
    assert crm_installation.connected_as == "Bob Builder <bob@crm.example>"


def test_authorize_url_carries_a_single_use_state_bound_to_installation_and_user(
    tenant_a: Tenant, crm_installation: Installation
) -> None:
    url = oauth_connect_start(installation=crm_installation, user=tenant_a.reseller)

    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    state = OAuthState.objects.get()
    assert query["state"] == state.state
    assert query["redirect_uri"] == "http://testserver/integrations/oauth/callback/"
    assert query["client_id"] == CRM_CLIENT_ID and query["response_type"] == "code"
    assert (state.installation, state.user) == (crm_installation, tenant_a.reseller)
    assert timezone.now() + dt.timedelta(minutes=9) < state.expires_at
    assert state.expires_at <= timezone.now() + dt.timedelta(minutes=10)


def test_forged_state_is_refused(
    client: Client, tenant_a: Tenant, crm_installation: Installation
) -> None:
    client.force_login(tenant_a.reseller)
    oauth_connect_start(installation=crm_installation, user=tenant_a.reseller)

    response = client.get(
        "/integrations/oauth/callback/", {"code": "anything", "state": "forged-state"}
    )

    assert response.status_code == 302
    assert "unknown state" in _messages(response)[0]
    crm_installation.refresh_from_db()
    assert crm_installation.tokens is None
    with pytest.raises(OAuthStateError):
        oauth_connect_finish(state="forged-state", code="x", user=tenant_a.reseller)


def test_reused_state_is_refused(
    client: Client, tenant_a: Tenant, crm_server: Any, crm_installation: Installation
) -> None:
    client.force_login(tenant_a.reseller)
    url = oauth_connect_start(installation=crm_installation, user=tenant_a.reseller)
    params = follow_authorize(url)
    assert client.get("/integrations/oauth/callback/", params).status_code == 302
    crm_installation.refresh_from_db()
    tokens = crm_installation.tokens

    replay = client.get("/integrations/oauth/callback/", params)

    assert "already used" in _messages(replay)[-1]
    assert replay["Location"] == reverse(
        "integrations:installation_detail", args=[crm_installation.pk]
    )
    crm_installation.refresh_from_db()
    assert crm_installation.tokens == tokens
    assert token_grants(crm_server, "/oauth/token") == ["authorization_code"]


def test_expired_state_is_refused(
    client: Client, tenant_a: Tenant, crm_server: Any, crm_installation: Installation
) -> None:
    client.force_login(tenant_a.reseller)
    params = follow_authorize(
        oauth_connect_start(installation=crm_installation, user=tenant_a.reseller)
    )
    OAuthState.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))

    response = client.get("/integrations/oauth/callback/", params)

    assert "expired" in _messages(response)[0]
    crm_installation.refresh_from_db()
    assert crm_installation.tokens is None
    assert token_grants(crm_server, "/oauth/token") == []


def test_another_users_state_is_refused(
    client: Client, tenant_a: Tenant, crm_server: Any, crm_installation: Installation
) -> None:
    params = follow_authorize(
        oauth_connect_start(installation=crm_installation, user=tenant_a.reseller)
    )
    client.force_login(tenant_a.org_admin)

    response = client.get("/integrations/oauth/callback/", params)

    assert "another user" in _messages(response)[0]
    crm_installation.refresh_from_db()
    assert crm_installation.tokens is None
    # The rightful user can still finish it.
    client.force_login(tenant_a.reseller)
    client.get("/integrations/oauth/callback/", params)
    crm_installation.refresh_from_db()
    assert crm_installation.status == Installation.Status.ACTIVE


def test_a_user_of_another_account_cannot_use_a_state(
    client: Client, tenant_a: Tenant, tenant_b: Tenant, crm_installation: Installation
) -> None:
    params = follow_authorize(
        oauth_connect_start(installation=crm_installation, user=tenant_a.reseller)
    )
    client.force_login(tenant_b.reseller)

    response = client.get("/integrations/oauth/callback/", params)

    assert response["Location"] == reverse("dashboard")
    crm_installation.refresh_from_db()
    assert crm_installation.tokens is None


def test_denied_consent_shows_an_actionable_message(
    client: Client, tenant_a: Tenant, crm_installation: Installation
) -> None:
    client.force_login(tenant_a.reseller)
    oauth_connect_start(installation=crm_installation, user=tenant_a.reseller)
    state = OAuthState.objects.get().state

    response = client.get(
        "/integrations/oauth/callback/", {"error": "access_denied", "state": state}
    )

    assert response["Location"] == reverse(
        "integrations:installation_detail", args=[crm_installation.pk]
    )
    assert "Access was denied" in _messages(response)[0]
    assert OAuthState.objects.get().used_at is not None


def test_bad_code_leaves_the_installation_not_connected_with_the_reason(
    client: Client, tenant_a: Tenant, crm_installation: Installation
) -> None:
    client.force_login(tenant_a.reseller)
    oauth_connect_start(installation=crm_installation, user=tenant_a.reseller)
    state = OAuthState.objects.get().state

    response = client.get("/integrations/oauth/callback/", {"code": "bogus", "state": state})

    assert "Connecting failed" in _messages(response)[0]
    crm_installation.refresh_from_db()
    assert crm_installation.status == Installation.Status.NOT_CONNECTED
    assert crm_installation.tokens is None and "Connect failed" in crm_installation.status_detail


def test_install_failure_after_connect_wipes_the_tokens(
    client: Client, tenant_a: Tenant, zoho_server: Any, zoho_installation: Installation
) -> None:
    zoho_server.configure(license_allows_pbx=False)
    client.force_login(tenant_a.reseller)

    response = connect_through_views(client, zoho_installation.pk)

    assert "Install" in _messages(response)[0] and "403" in _messages(response)[0]
    zoho_installation.refresh_from_db()
    assert zoho_installation.tokens is None
    assert zoho_installation.status == Installation.Status.NOT_CONNECTED


def test_disconnect_revokes_and_wipes_tokens(
    client: Client, tenant_a: Tenant, crm_server: Any, crm_installation: Installation
) -> None:
    client.force_login(tenant_a.reseller)
    connect_through_views(client, crm_installation.pk)
    crm_installation.refresh_from_db()
    refresh_token = crm_installation.tokens["refresh_token"]

    response = client.post(
        reverse("integrations:oauth_disconnect", args=[crm_installation.pk]), follow=True
    )

    assert "was disconnected" in response.content.decode()
    revoked = crm_server.requests_to("/oauth/revoke", "POST")
    assert [r.args().get("token") for r in revoked] == [refresh_token]
    crm_installation.refresh_from_db()
    assert crm_installation.tokens is None and crm_installation.connected_as == ""
    assert crm_installation.status == Installation.Status.NOT_CONNECTED


def test_zoho_disconnect_runs_uninstall_so_reconnect_works(
    client: Client, tenant_a: Tenant, zoho_server: Any, zoho_installation: Installation
) -> None:
    client.force_login(tenant_a.reseller)
    connect_through_views(client, zoho_installation.pk)
    oauth_disconnect(installation=zoho_installation)
    assert zoho_server.integrated is False

    response = connect_through_views(client, zoho_installation.pk)

    assert _messages(response)[0].startswith("Connected as")
    assert zoho_server.integrated is True


@pytest.fixture
def bearer_installation(tenant_a: Tenant, crm_server: Any) -> Installation:
    """An installation of a spec that authenticates with an API key (no OAuth)."""
    return installation_create(
        user=tenant_a.reseller,
        organization=tenant_a.org,
        spec_version=approved_version(bearer_crm_document()),
        properties={"Base URL": crm_server.url},
        secret_properties={"API Key": API_KEY_SECRET},
    )


def test_connect_of_a_non_oauth_spec_is_refused(
    client: Client, tenant_a: Tenant, bearer_installation: Installation
) -> None:
    installation = bearer_installation
    client.force_login(tenant_a.reseller)

    response = client.post(reverse("integrations:oauth_connect", args=[installation.pk]))

    assert response["Location"] == reverse(
        "integrations:installation_detail", args=[installation.pk]
    )
    assert "does not use OAuth" in _messages(response)[0]
    assert not OAuthState.objects.exists()


def test_disconnect_of_a_non_oauth_spec_is_refused_and_changes_nothing(
    client: Client, tenant_a: Tenant, bearer_installation: Installation
) -> None:
    installation = bearer_installation
    client.force_login(tenant_a.reseller)

    response = client.post(reverse("integrations:oauth_disconnect", args=[installation.pk]))

    assert "nothing to disconnect" in _messages(response)[0]
    installation.refresh_from_db()
    assert installation.status == Installation.Status.ACTIVE
    assert installation.connected_as


def test_connect_needs_post(
    client: Client, tenant_a: Tenant, crm_installation: Installation
) -> None:
    client.force_login(tenant_a.reseller)

    response = client.get(reverse("integrations:oauth_connect", args=[crm_installation.pk]))

    assert response.status_code == 405
    assert not OAuthState.objects.exists()


def test_callback_requires_login(client: Client) -> None:
    response = client.get("/integrations/oauth/callback/", {"code": "c", "state": "s"})

    assert response.status_code == 302 and response["Location"].startswith("/login/")
