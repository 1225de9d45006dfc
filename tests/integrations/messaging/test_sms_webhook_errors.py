"""What the sender of an SMS webhook is told when its request is wrong: every offending field,
named by its place in the request (``params.to``), with what to send instead — and nothing
stored. Also: national-format numbers are read in the region of the organization they are
for, not always as US numbers."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from integrations.models import InboxEvent, Message
from tests.factories import InstallationFactory
from tests.integrations.messaging.support import bound_number, sms_installation
from tests.integrations.portal.portal_support import approved_version, builtin_version

pytestmark = pytest.mark.django_db

TO = "+14155550191"
SENDER = "+14155550100"


@pytest.fixture
def url(tenant_a: Any, sms_server: Any) -> str:
    installation = sms_installation(tenant_a.org, sms_server)
    bound_number(tenant_a.org, installation, TO)
    return f"/services/example-sms/a{tenant_a.account.pk}"


def _post(client: Any, captured: Any, url: str, payload: Any) -> Any:
    with captured(execute=True):
        return client.post(url, data=json.dumps(payload), content_type="application/json")


def _nothing_stored() -> None:
    assert InboxEvent.objects.count() == 0
    assert Message.objects.count() == 0


def _assert_for_the_sender(message: str) -> None:
    """Advice to the provider, not to the spec's author."""
    assert "spec" not in message.lower()
    assert "parameter's type" not in message


def test_status_without_an_id_names_the_id_field(
    client: Any, django_capture_on_commit_callbacks: Any, url: str
) -> None:
    response = _post(
        client,
        django_capture_on_commit_callbacks,
        url,
        {"method": "status", "params": {"status": "delivered"}},
    )

    assert response.status_code == 400, response.content
    error = response.json()
    assert list(error["errors"]) == ["params.id"]
    assert "params.id is missing" in error["message"]
    assert "the id of the message" in error["message"]
    _assert_for_the_sender(error["message"])
    _nothing_stored()


def test_missing_from_and_to_are_both_reported(
    client: Any, django_capture_on_commit_callbacks: Any, url: str
) -> None:
    response = _post(
        client,
        django_capture_on_commit_callbacks,
        url,
        {"method": "message", "params": {"content": "who am I?"}},
    )

    assert response.status_code == 400, response.content
    error = response.json()
    assert set(error["errors"]) == {"params.from", "params.to"}
    assert "params.from and params.to are missing" in error["message"]
    assert "the sender's phone number" in error["errors"]["params.from"][0]
    _nothing_stored()


def test_a_value_of_the_wrong_type_names_the_field_with_advice_for_the_sender(
    client: Any, django_capture_on_commit_callbacks: Any, url: str
) -> None:
    response = _post(
        client,
        django_capture_on_commit_callbacks,
        url,
        {"method": "message", "params": {"from": {"a": 1}, "to": TO, "content": "x"}},
    )

    assert response.status_code == 400, response.content
    error = response.json()
    assert list(error["errors"]) == ["params.from"]
    assert "must be a phone number written as text" in error["errors"]["params.from"][0]
    assert "params.from" in error["message"]
    _assert_for_the_sender(error["message"])
    _nothing_stored()


def test_every_value_of_the_wrong_type_is_named_at_once(
    client: Any, django_capture_on_commit_callbacks: Any, url: str
) -> None:
    response = _post(
        client,
        django_capture_on_commit_callbacks,
        url,
        {"method": "message", "params": {"from": {"a": 1}, "to": [TO], "content": "x"}},
    )

    assert response.status_code == 400, response.content
    error = response.json()
    assert error["errors"] == {
        "params.from": ["must be a phone number written as text, not {'a': 1}."],
        "params.to": [f"must be a phone number written as text, not ['{TO}']."],
    }
    assert "params.from must be" in error["message"]
    assert "params.to must be" in error["message"]
    _assert_for_the_sender(error["message"])
    _nothing_stored()


def test_a_declared_integer_of_the_wrong_type_names_its_place(
    client: Any, django_capture_on_commit_callbacks: Any, tenant_a: Any, sms_server: Any
) -> None:
    document = copy.deepcopy(builtin_version("example-sms").document)
    document.update({"id": "typed-sms", "name": "Typed SMS", "parameters": {"segments": "integer"}})
    model = next(m for m in document["Webhook"] if m["event_key"] == "message")
    model["request_parameters"]["params"]["meta"] = {"segments": "$segments$"}
    installation = InstallationFactory(
        organization=tenant_a.org,
        spec_version=approved_version(document, account=tenant_a.account),
        properties={"API URL": sms_server.url + "/webhook"},
        secret_properties={},
    )
    bound_number(tenant_a.org, installation, TO)
    payload = {
        "method": "message",
        "params": {"from": SENDER, "to": TO, "content": "x", "meta": {"segments": "many"}},
    }

    response = _post(
        client,
        django_capture_on_commit_callbacks,
        f"/services/typed-sms/a{tenant_a.account.pk}",
        payload,
    )

    assert response.status_code == 400, response.content
    error = response.json()
    assert error["errors"] == {"params.meta.segments": ["must be a whole number, not 'many'."]}
    _assert_for_the_sender(error["message"])
    _nothing_stored()


@pytest.mark.parametrize(
    ("content", "kind"), [({"a": 1}, "a JSON object"), (["a", "b"], "a list")], ids=["obj", "list"]
)
def test_content_that_is_not_text_is_400_naming_the_field(
    client: Any, django_capture_on_commit_callbacks: Any, url: str, content: Any, kind: str
) -> None:
    response = _post(
        client,
        django_capture_on_commit_callbacks,
        url,
        {"method": "message", "params": {"from": SENDER, "to": TO, "content": content}},
    )

    assert response.status_code == 400, response.content
    error = response.json()
    assert error["errors"] == {"params.content": [f"must be text, not {kind}."]}
    assert "params.content must be text" in error["message"]
    _nothing_stored()


def test_numeric_content_is_still_accepted_as_text(
    client: Any, django_capture_on_commit_callbacks: Any, url: str
) -> None:
    response = _post(
        client,
        django_capture_on_commit_callbacks,
        url,
        {"method": "message", "params": {"from": SENDER, "to": TO, "content": 42}},
    )
    assert response.status_code == 202, response.content
    assert Message.objects.get().content == "42"


# --- regions --------------------------------------------------------------------------------


def test_national_numbers_are_read_in_the_region_of_each_organization(
    client: Any, django_capture_on_commit_callbacks: Any, tenant_a: Any, sms_server: Any
) -> None:
    """One account, a US and a UK organization on the same integration: the provider writes
    each organization's numbers in national format."""
    tenant_a.sibling_org.default_region = "GB"
    tenant_a.sibling_org.save()
    us = sms_installation(tenant_a.org, sms_server)
    uk = sms_installation(tenant_a.sibling_org, sms_server)
    us_number = bound_number(tenant_a.org, us, "+14155550192")
    uk_number = bound_number(tenant_a.sibling_org, uk, "+442079460958")
    url = f"/services/example-sms/a{tenant_a.account.pk}"

    to_uk = _post(
        client,
        django_capture_on_commit_callbacks,
        url,
        {
            "method": "message",
            "params": {"from": "07700 900123", "to": "020 7946 0958", "content": "uk"},
        },
    )
    to_us = _post(
        client,
        django_capture_on_commit_callbacks,
        url,
        {
            "method": "message",
            "params": {"from": "(415) 555-0100", "to": "(415) 555-0192", "content": "us"},
        },
    )

    assert (to_uk.status_code, to_us.status_code) == (202, 202), (to_uk.content, to_us.content)
    uk_message = Message.objects.get(content="uk")
    assert uk_message.sms_number == uk_number
    assert uk_message.organization == tenant_a.sibling_org
    assert uk_message.from_number == "+447700900123"
    us_message = Message.objects.get(content="us")
    assert us_message.sms_number == us_number
    assert us_message.from_number == "+14155550100"


def test_a_national_number_of_no_organization_is_404_in_e164(
    client: Any, django_capture_on_commit_callbacks: Any, tenant_a: Any, sms_server: Any
) -> None:
    tenant_a.org.default_region = "GB"
    tenant_a.org.save()
    bound_number(tenant_a.org, sms_installation(tenant_a.org, sms_server), "+442079460958")

    response = _post(
        client,
        django_capture_on_commit_callbacks,
        f"/services/example-sms/a{tenant_a.account.pk}",
        {"method": "message", "params": {"from": SENDER, "to": "020 7946 0000", "content": "x"}},
    )

    assert response.status_code == 404, response.content
    assert response.json()["message"] == "+442079460000 is not an SMS number of this account"
    _nothing_stored()
