"""Two organizations of one reseller account on a signed SMS spec, each with its own secret:
a request signed with one organization's secret reaches only that organization's numbers and
messages (status events included)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from integrations.models import InboxEvent, Message
from tests.factories import InstallationFactory
from tests.integrations.messaging.support import bound_number
from tests.integrations.portal.portal_support import approved_version, builtin_version

pytestmark = pytest.mark.django_db

ALPHA_TOKEN = "alpha-callback-token"
BRAVO_TOKEN = "bravo-callback-token"


def _signed_document() -> dict[str, Any]:
    """example-sms with its models behind an `AuthToken` header check (the RingRx way)."""
    document = copy.deepcopy(builtin_version("example-sms").document)
    document.update({"id": "signed-sms", "name": "Signed SMS"})
    document["properties"] = [
        *document["properties"],
        {"name": "Callback Token", "type": "secret", "required": True},
    ]
    document["Webhook"] = {
        "signature": {"type": "header", "header": "AuthToken", "secret": "$Callback Token$"},
        "models": document["Webhook"],
    }
    return document


@pytest.fixture
def orgs(tenant_a: Any, sms_server: Any) -> dict[str, Any]:
    version = approved_version(_signed_document(), account=tenant_a.account)
    cast: dict[str, Any] = {"url": f"/services/signed-sms/a{tenant_a.account.pk}"}
    for name, org, token, number in (
        ("alpha", tenant_a.org, ALPHA_TOKEN, "+14155550181"),
        ("bravo", tenant_a.sibling_org, BRAVO_TOKEN, "+14155550182"),
    ):
        installation = InstallationFactory(
            organization=org,
            spec_version=version,
            properties={"API URL": sms_server.url + "/webhook"},
            secret_properties={"Callback Token": token},
        )
        sms_number = bound_number(org, installation, number)
        sent = Message.objects.create(
            organization=org,
            installation=installation,
            sms_number=sms_number,
            direction=Message.Direction.OUTBOUND,
            from_number=number,
            to_number="+14155550100",
            content=f"hello from {name}",
            messageid=f"prov-{name}",
            status=Message.Status.SENT,
        )
        cast[name] = {"number": sms_number, "message": sent}
    return cast


def _post(client: Any, captured: Any, url: str, payload: dict[str, Any], token: str) -> Any:
    with captured(execute=True):
        return client.post(
            url, data=json.dumps(payload), content_type="application/json", HTTP_AUTHTOKEN=token
        )


def _status(messageid: str) -> dict[str, Any]:
    return {"method": "status", "params": {"id": messageid, "status": "delivered"}}


def test_status_signed_by_another_org_is_401_and_changes_nothing(
    client: Any, django_capture_on_commit_callbacks: Any, orgs: dict[str, Any]
) -> None:
    response = _post(
        client,
        django_capture_on_commit_callbacks,
        orgs["url"],
        _status("prov-alpha"),
        BRAVO_TOKEN,
    )

    assert response.status_code == 401, response.content
    assert "signature" in response.json()["message"]
    assert BRAVO_TOKEN not in response.content.decode()
    assert InboxEvent.objects.count() == 0
    alpha = orgs["alpha"]["message"]
    alpha.refresh_from_db()
    assert alpha.status == Message.Status.SENT


@pytest.mark.parametrize(("org", "token"), [("alpha", ALPHA_TOKEN), ("bravo", BRAVO_TOKEN)])
def test_status_signed_by_its_own_org_updates_only_that_message(
    client: Any,
    django_capture_on_commit_callbacks: Any,
    orgs: dict[str, Any],
    org: str,
    token: str,
) -> None:
    response = _post(
        client, django_capture_on_commit_callbacks, orgs["url"], _status(f"prov-{org}"), token
    )

    assert response.status_code == 202, response.content
    statuses = {
        name: Message.objects.get(pk=orgs[name]["message"].pk).status for name in ("alpha", "bravo")
    }
    other = "bravo" if org == "alpha" else "alpha"
    assert statuses[org] == Message.Status.DELIVERED
    assert statuses[other] == Message.Status.SENT
    assert InboxEvent.objects.get().organization == orgs[org]["message"].organization


def test_message_to_another_orgs_number_is_401_and_nothing_is_stored(
    client: Any, django_capture_on_commit_callbacks: Any, orgs: dict[str, Any]
) -> None:
    payload = {
        "method": "message",
        "params": {
            "from": "+14155550100",
            "to": orgs["alpha"]["number"].number,
            "content": "not yours",
        },
    }
    refused = _post(client, django_capture_on_commit_callbacks, orgs["url"], payload, BRAVO_TOKEN)
    accepted = _post(client, django_capture_on_commit_callbacks, orgs["url"], payload, ALPHA_TOKEN)

    assert refused.status_code == 401, refused.content
    assert accepted.status_code == 202, accepted.content
    inbound = Message.objects.get(direction=Message.Direction.INBOUND)
    assert inbound.sms_number == orgs["alpha"]["number"]
    assert InboxEvent.objects.count() == 1
