"""Click-to-call and call control from a CRM (Zoho PhoneBridge): authenticated by the
authorizationparam registered at install, each request turned into a `clicktocall` callback
to the organization's PBX."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from integrations.connections import installation_connection
from integrations.models import InboxEvent
from integrations.sandbox.zoho import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, SEED_USERS
from integrations.webhooks.crm import crm_callback_credential, crm_callback_token
from tests.factories import CrmUserFactory, UserMappingFactory
from tests.integrations.messaging.support import crm_installation, subscribe
from tests.integrations.portal.portal_support import builtin_version

CALLBACK_TOKEN = "zoho-callback-token-42"
BOB = SEED_USERS[1]["userid"]


@pytest.fixture
def zoho_installed(live_server: Any, settings: Any, tenant_a: Any, zoho_server: Any, recorder):
    """A Zoho installation whose Install registered our URLs (on the live server) with Zoho."""
    from tests.factories import InstallationFactory

    settings.PUBLIC_BASE_URL = live_server.url
    tokens = zoho_server.issue_tokens()
    installation = InstallationFactory(
        organization=tenant_a.org,
        spec_version=builtin_version("zoho-phonebridge"),
        properties={
            "Accounts URL": zoho_server.url,
            "API Domain": zoho_server.url,
            "Client ID": DEFAULT_CLIENT_ID,
        },
        secret_properties={
            "Client Secret": DEFAULT_CLIENT_SECRET,
            "Callback Token": CALLBACK_TOKEN,
        },
        tokens={
            "access_token": tokens["access_token"],
            "refresh_token": tokens["refresh_token"],
            "expires_at": time.time() + 3600,
        },
    )
    installation_connection(installation).client.install()
    crm_user = CrmUserFactory(installation=installation, external_id=BOB, name="Bob Sales")
    UserMappingFactory(installation=installation, pbx_user=tenant_a.pbx_user, crm_user=crm_user)
    subscribe(tenant_a.org, "clicktocall", recorder.url + "/pbx/{action}?ext={extension}")
    return installation


def test_the_registered_authorizationparam_is_the_credential(zoho_installed: Any) -> None:
    assert crm_callback_credential(zoho_installed) == ("X-Patchbay-Token", CALLBACK_TOKEN)


def test_click_to_call_becomes_a_clicktocall_callback_to_the_pbx(
    zoho_installed: Any, zoho_server: Any, recorder: Any, tenant_a: Any
) -> None:
    registered = zoho_server.call_control
    assert registered["urls"]["clicktocallurl"].endswith(f"/crm/{zoho_installed.key}/clicktocall")
    assert registered["authorizationparam"]["value"] == CALLBACK_TOKEN

    response = zoho_server.click_to_call("0014155550100", userid=BOB)

    assert response.status_code == 200, response.text
    calls = recorder.requests_to("/pbx/clicktocall")
    assert len(calls) == 1
    assert calls[0].args()["ext"] == tenant_a.pbx_user.extension
    body = calls[0].json
    assert body["action"] == "clicktocall"
    assert body["phone"] == "+14155550100"
    assert body["extension"] == tenant_a.pbx_user.extension
    assert body["crm_user_id"] == BOB
    event = InboxEvent.objects.get(source="crm")
    assert event.state == InboxEvent.State.DONE
    assert CALLBACK_TOKEN not in event.body + str(event.headers) + str(event.payload)


@pytest.mark.parametrize(
    ("action", "url_action", "extra"),
    [
        ("answer", "answer", {}),
        ("hungup", "hangup", {}),
        ("mute", "mute", {}),
        ("unmute", "unmute", {}),
        ("hold", "hold", {}),
        ("unhold", "unhold", {}),
        ("keypress", "keypress", {"digits": "5"}),
    ],
)
def test_call_control_becomes_a_callback_with_its_action(
    zoho_installed: Any, zoho_server: Any, recorder: Any, action: str, url_action: str, extra
) -> None:
    response = zoho_server.send_call_control(action, "call-77", userid=BOB, **extra)

    assert response.status_code == 200, response.text
    calls = recorder.requests_to(f"/pbx/{url_action}")
    assert len(calls) == 1
    assert calls[0].json["call_id"] == "call-77"
    if extra:
        assert calls[0].json["digits"] == "5"


@pytest.mark.parametrize("token", [None, "wrong-token"], ids=["missing", "wrong"])
def test_wrong_or_missing_authorizationparam_is_401_and_nothing_stored(
    zoho_installed: Any, live_server: Any, recorder: Any, token: str | None
) -> None:
    headers = {} if token is None else {"X-Patchbay-Token": token}
    response = requests.post(
        f"{live_server.url}/api/v1/hooks/crm/{zoho_installed.key}/clicktocall",
        data={"tonumber": "0014155550100", "userid": BOB},
        headers=headers,
        timeout=10,
    )
    assert response.status_code == 401
    assert not InboxEvent.objects.filter(source="crm").exists()
    assert recorder.requests_to("/pbx/clicktocall") == []


@pytest.mark.django_db
def test_unknown_installation_key_is_401(client: Any) -> None:
    response = client.post("/api/v1/hooks/crm/nope/clicktocall", {"tonumber": "+14155550100"})
    assert response.status_code == 401


@pytest.mark.django_db
def test_a_spec_without_authorizationparam_uses_the_derived_token(
    client: Any, tenant_a: Any, crm_server: Any, django_capture_on_commit_callbacks: Any
) -> None:
    installation = crm_installation(tenant_a.org, crm_server)
    name, value = crm_callback_credential(installation)
    assert (name, value) == ("X-Patchbay-Token", crm_callback_token(installation))
    url = f"/api/v1/hooks/crm/{installation.key}/clicktocall"

    refused = client.post(url, {"tonumber": "+14155550100"}, HTTP_X_PATCHBAY_TOKEN="guess")
    missing = client.post(url, {}, HTTP_X_PATCHBAY_TOKEN=value)
    with django_capture_on_commit_callbacks(execute=True):
        accepted = client.post(url, {"tonumber": "+14155550100"}, HTTP_X_PATCHBAY_TOKEN=value)

    assert refused.status_code == 401
    assert missing.status_code == 400 and "tonumber" in missing.json()["errors"]
    assert accepted.status_code == 200, accepted.content
    assert InboxEvent.objects.get(source="crm").normalized["payload"]["phone"] == "+14155550100"
