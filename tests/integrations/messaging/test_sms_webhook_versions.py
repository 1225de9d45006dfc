"""Inbound SMS is read with the spec version each installation is pinned to (DESIGN 4.6):
approving a new version of a spec changes nothing for installations still on the old one, and
a number bound to another integration is not reachable through this one's URL."""

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

V1_NUMBER = "+14155550161"
V2_NUMBER = "+14155550162"
SENDER = "+14155550100"


def _document(content_key: str) -> dict[str, Any]:
    """The example-sms spec as the account's own `pinned-sms`; its message model reads the
    text from `params.<content_key>` (v1: `content`, v2: `body`)."""
    document = copy.deepcopy(builtin_version("example-sms").document)
    document.update({"id": "pinned-sms", "name": "Pinned SMS"})
    model = next(m for m in document["Webhook"] if m["event_key"] == "message")
    model["request_parameters"]["params"] = {
        "from": "$from$",
        "to": "$to$",
        content_key: "$content$",
    }
    return document


def _installation(organization: Any, version: Any, sms_server: Any) -> Any:
    return InstallationFactory(
        organization=organization,
        spec_version=version,
        properties={"API URL": sms_server.url + "/webhook"},
        secret_properties={},
    )


def _post(client: Any, captured: Any, account: Any, params: dict[str, Any]) -> Any:
    with captured(execute=True):
        return client.post(
            f"/services/pinned-sms/a{account.pk}",
            data=json.dumps({"method": "message", "params": params}),
            content_type="application/json",
        )


def test_approving_v2_does_not_change_how_v1_installations_read_messages(
    client: Any, django_capture_on_commit_callbacks: Any, tenant_a: Any, sms_server: Any
) -> None:
    v1 = approved_version(_document("content"), account=tenant_a.account)
    installation = _installation(tenant_a.org, v1, sms_server)
    bound_number(tenant_a.org, installation, V1_NUMBER)
    v2 = approved_version(_document("body"), account=tenant_a.account)
    assert v2.number > v1.number and v2.spec == v1.spec

    response = _post(
        client,
        django_capture_on_commit_callbacks,
        tenant_a.account,
        {"from": SENDER, "to": V1_NUMBER, "content": "read with v1"},
    )

    assert response.status_code == 202, response.content
    message = Message.objects.get()
    assert message.installation == installation
    assert message.content == "read with v1"


def test_each_installation_is_read_with_its_own_version_newest_first(
    client: Any, django_capture_on_commit_callbacks: Any, tenant_a: Any, sms_server: Any
) -> None:
    v1 = approved_version(_document("content"), account=tenant_a.account)
    old = _installation(tenant_a.org, v1, sms_server)
    bound_number(tenant_a.org, old, V1_NUMBER)
    v2 = approved_version(_document("body"), account=tenant_a.account)
    new = _installation(tenant_a.sibling_org, v2, sms_server)
    bound_number(tenant_a.sibling_org, new, V2_NUMBER)

    to_new = _post(
        client,
        django_capture_on_commit_callbacks,
        tenant_a.account,
        {"from": SENDER, "to": V2_NUMBER, "body": "read with v2"},
    )
    to_old = _post(
        client,
        django_capture_on_commit_callbacks,
        tenant_a.account,
        {"from": SENDER, "to": V1_NUMBER, "content": "read with v1"},
    )

    assert (to_new.status_code, to_old.status_code) == (202, 202), (
        to_new.content,
        to_old.content,
    )
    by_org = {m.organization_id: m for m in Message.objects.all()}
    assert by_org[tenant_a.sibling_org.pk].content == "read with v2"
    assert by_org[tenant_a.sibling_org.pk].installation == new
    assert by_org[tenant_a.org.pk].content == "read with v1"
    assert by_org[tenant_a.org.pk].installation == old


def test_a_number_bound_to_another_integration_is_404_and_nothing_is_stored(
    client: Any, django_capture_on_commit_callbacks: Any, tenant_a: Any, sms_server: Any
) -> None:
    """Posting to example-sms's URL cannot deliver to a number that receives through a
    (signed) RingRx installation."""
    v1 = approved_version(_document("content"), account=tenant_a.account)
    _installation(tenant_a.org, v1, sms_server)
    ringrx = InstallationFactory(
        organization=tenant_a.org,
        spec_version=builtin_version("ringrx-sms"),
        properties={"API URL": "http://127.0.0.1:9", "API Token": "tok"},
        secret_properties={"API Secret": "sec", "Callback Token": "cb-secret-123"},
    )
    bound_number(tenant_a.org, ringrx, V2_NUMBER)

    response = _post(
        client,
        django_capture_on_commit_callbacks,
        tenant_a.account,
        {"from": SENDER, "to": V2_NUMBER, "content": "sneaking in"},
    )

    assert response.status_code == 404, response.content
    assert V2_NUMBER in response.json()["message"]
    assert "not bound to the pinned-sms integration" in response.json()["message"]
    assert InboxEvent.objects.count() == 0
    assert Message.objects.count() == 0
