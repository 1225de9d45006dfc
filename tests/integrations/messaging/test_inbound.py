"""Inbound SMS/MMS at /services/<service_id>/a<account_id> (DESIGN 4.6, 4.9): both seed Webhook
models with their bodies verbatim, routing by the `to` number, 404 for a number not of the
account, 400 naming what is wrong, 401 for bad signatures, 200 for undescribed events — and
nothing stored unless accepted. Accepted messages appear in the conversation page, are
logged to the CRM and forwarded to `sms` callbacks."""

from __future__ import annotations

import json
from typing import Any

import pytest

from integrations.models import InboxEvent, Message
from tests.factories import InstallationFactory, PbxUserFactory
from tests.integrations.messaging.support import (
    bound_number,
    crm_installation,
    sms_installation,
    subscribe,
)
from tests.integrations.portal.portal_support import approved_version, builtin_version

pytestmark = pytest.mark.django_db

# The seed's request bodies, byte for byte (seeds/ringotel-sms-json-framework.txt).
SEED_MESSAGE_BODY = (
    '{ "method": "message", "params":{ "from": "+61855555555", "to": "+61123456789", '
    '"content": "Hello there!" } }'
)
SEED_FILE_BODY = (
    '{ "method": "file", "params":{ "from": "+61855555555", "to": "+61123456789", '
    '"text": "Sending a file", "url":"https://your.server.com/files/8a8d89798as9ud.jpeg" } }'
)
SEED_TO = "+61123456789"


@pytest.fixture
def inbound(tenant_a: Any, sms_server: Any) -> dict[str, Any]:
    installation = sms_installation(tenant_a.org, sms_server)
    second_user = PbxUserFactory(organization=tenant_a.org)
    number = bound_number(
        tenant_a.org, installation, SEED_TO, users=[tenant_a.pbx_user, second_user]
    )
    return {
        "installation": installation,
        "number": number,
        "users": [tenant_a.pbx_user, second_user],
        "url": f"/services/example-sms/a{tenant_a.account.pk}",
    }


def _post(client: Any, url: str, body: str | bytes, captured: Any, **extra: Any) -> Any:
    with captured(execute=True):
        return client.post(url, data=body, content_type="application/json", **extra)


def _nothing_stored() -> None:
    assert InboxEvent.objects.count() == 0
    assert Message.objects.count() == 0


def test_seed_message_model_is_routed_to_the_org_and_users_of_the_to_number(
    client: Any, django_capture_on_commit_callbacks: Any, inbound: dict[str, Any], tenant_a: Any
) -> None:
    response = _post(client, inbound["url"], SEED_MESSAGE_BODY, django_capture_on_commit_callbacks)

    assert response.status_code == 202, response.content
    event = InboxEvent.objects.get()
    assert (event.source, event.event_type) == ("sms", "message")
    assert event.organization == tenant_a.org
    assert event.state == InboxEvent.State.DONE, event.last_error
    assert event.body == SEED_MESSAGE_BODY
    assert sorted(event.normalized["users"]) == sorted(u.pk for u in inbound["users"])
    message = Message.objects.get()
    assert message.organization == tenant_a.org
    assert message.sms_number == inbound["number"]
    assert message.installation == inbound["installation"]
    assert message.direction == "inbound" and message.status == "received"
    assert (message.from_number, message.to_number) == ("+61855555555", SEED_TO)
    assert message.content == "Hello there!"


def test_the_built_in_spec_keeps_its_url_when_an_account_spec_reuses_its_id(
    client: Any, django_capture_on_commit_callbacks: Any, inbound: dict[str, Any], tenant_a: Any
) -> None:
    # Uploaded before built-in ids were reserved: same id, a model that reads nothing we send.
    document = json.loads(json.dumps(builtin_version("example-sms").document))
    document["Webhook"] = [{"event_key": "legacy", "event_type": "message"}]
    approved_version(document, account=tenant_a.account)

    response = _post(client, inbound["url"], SEED_MESSAGE_BODY, django_capture_on_commit_callbacks)

    assert response.status_code == 202, response.content
    assert Message.objects.get().installation == inbound["installation"]


def test_seed_file_model_is_stored_as_an_mms_with_its_url(
    client: Any, django_capture_on_commit_callbacks: Any, inbound: dict[str, Any], tenant_a: Any
) -> None:
    response = _post(client, inbound["url"], SEED_FILE_BODY, django_capture_on_commit_callbacks)

    assert response.status_code == 202, response.content
    assert InboxEvent.objects.get().event_type == "mms"
    message = Message.objects.get()
    assert message.organization == tenant_a.org
    assert message.content == "Sending a file"
    assert message.media_urls == ["https://your.server.com/files/8a8d89798as9ud.jpeg"]


def test_inbound_messages_show_in_the_conversation_page(
    client: Any, django_capture_on_commit_callbacks: Any, inbound: dict[str, Any], tenant_a: Any
) -> None:
    _post(client, inbound["url"], SEED_MESSAGE_BODY, django_capture_on_commit_callbacks)
    _post(client, inbound["url"], SEED_FILE_BODY, django_capture_on_commit_callbacks)

    client.force_login(tenant_a.org_admin)
    index = client.get(f"/orgs/{tenant_a.org.pk}/conversations/")
    assert index.status_code == 200
    page = client.get(
        f"/orgs/{tenant_a.org.pk}/conversations/{inbound['number'].pk}/",
        {"with": "+61855555555"},
    )
    assert page.status_code == 200
    html = page.content.decode()
    assert "Hello there!" in html
    assert "Sending a file" in html
    assert "8a8d89798as9ud.jpeg" in html
    assert 'data-status="received"' in html


def test_unknown_to_number_is_404_and_nothing_is_stored(
    client: Any, django_capture_on_commit_callbacks: Any, inbound: dict[str, Any]
) -> None:
    body = SEED_MESSAGE_BODY.replace(SEED_TO, "+61123456000")
    response = _post(client, inbound["url"], body, django_capture_on_commit_callbacks)

    assert response.status_code == 404
    assert response.json()["message"] == "+61123456000 is not an SMS number of this account"
    _nothing_stored()


def test_number_of_another_account_is_404(
    client: Any, django_capture_on_commit_callbacks: Any, inbound: dict[str, Any], tenant_b: Any
) -> None:
    response = _post(
        client,
        f"/services/example-sms/a{tenant_b.account.pk}",
        SEED_MESSAGE_BODY,
        django_capture_on_commit_callbacks,
    )
    assert response.status_code == 404
    _nothing_stored()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"method": "message", "params": {', "body"),
        (
            json.dumps({"method": "message", "params": {"from": "+61855555555", "content": "x"}}),
            "params.to",
        ),
        (
            json.dumps({"method": "file", "params": {"to": SEED_TO, "url": "https://x.example/f"}}),
            "params.from",
        ),
    ],
    ids=["unparseable", "missing-to", "missing-from"],
)
def test_malformed_request_is_400_naming_what_is_wrong_and_nothing_is_stored(
    client: Any,
    django_capture_on_commit_callbacks: Any,
    inbound: dict[str, Any],
    body: str,
    field: str,
) -> None:
    response = _post(client, inbound["url"], body, django_capture_on_commit_callbacks)

    assert response.status_code == 400, response.content
    error = response.json()
    assert field in error["errors"]
    assert field in error["message"]
    _nothing_stored()


def test_undescribed_event_is_200_and_recorded_as_ignored(
    client: Any, django_capture_on_commit_callbacks: Any, inbound: dict[str, Any]
) -> None:
    body = json.dumps({"method": "typing", "params": {"from": "+61855555555", "to": SEED_TO}})
    response = _post(client, inbound["url"], body, django_capture_on_commit_callbacks)

    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    event = InboxEvent.objects.get()
    assert event.state == InboxEvent.State.IGNORED
    assert Message.objects.count() == 0


def test_unknown_service_is_404(client: Any, inbound: dict[str, Any], tenant_a: Any) -> None:
    response = client.post(
        f"/services/no-such-sms/a{tenant_a.account.pk}",
        data=SEED_MESSAGE_BODY,
        content_type="application/json",
    )
    assert response.status_code == 404
    _nothing_stored()


def test_inbound_message_is_forwarded_to_sms_callbacks(
    client: Any,
    django_capture_on_commit_callbacks: Any,
    inbound: dict[str, Any],
    tenant_a: Any,
    recorder: Any,
) -> None:
    subscribe(tenant_a.org, "sms", recorder.url + "/sms?from={from}&to={to}")
    _post(client, inbound["url"], SEED_MESSAGE_BODY, django_capture_on_commit_callbacks)

    received = recorder.requests_to("/sms")
    assert len(received) == 1
    assert received[0].args()["from"] == "+61855555555"
    body = received[0].json
    assert body["from"] == "+61855555555" and body["to"] == SEED_TO
    assert body["message"] == "Hello there!"
    assert sorted(body["extensions"]) == sorted(u.extension for u in inbound["users"])


def test_inbound_message_is_logged_to_a_crm_with_create_message_log(
    client: Any,
    django_capture_on_commit_callbacks: Any,
    inbound: dict[str, Any],
    tenant_a: Any,
    crm_server: Any,
) -> None:
    crm_installation(tenant_a.org, crm_server)
    _post(client, inbound["url"], SEED_MESSAGE_BODY, django_capture_on_commit_callbacks)

    logs = [a for a in crm_server.activities.values() if a.get("type") == "sms"]
    assert len(logs) == 1
    assert logs[0]["notes"] == "Hello there!"
    assert logs[0]["from"] == "+61855555555"
    assert logs[0]["direction"] == "inbound"
    assert InboxEvent.objects.get().state == InboxEvent.State.DONE


def test_get_requests_are_matched_against_the_query(
    client: Any, django_capture_on_commit_callbacks: Any, tenant_a: Any, sms_server: Any
) -> None:
    """A provider that reports by GET (the model's request_method) is matched on the query."""
    import copy

    from tests.integrations.portal.portal_support import approved_version

    document = copy.deepcopy(builtin_version("example-sms").document)
    document.update(
        {
            "id": "get-sms",
            "name": "Get SMS",
            "Webhook": [
                {
                    "event_key": "message",
                    "event_type": "message",
                    "request_method": "GET",
                    "request_parameters": {"from": "$from$", "to": "$to$", "text": "$content$"},
                }
            ],
        }
    )
    installation = InstallationFactory(
        organization=tenant_a.org,
        spec_version=approved_version(document, account=tenant_a.account),
        properties={"API URL": sms_server.url + "/webhook"},
        secret_properties={},
    )
    bound_number(tenant_a.org, installation, "+14155550155")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.get(
            f"/services/get-sms/a{tenant_a.account.pk}",
            {"from": "+14155550100", "to": "+14155550155", "text": "by GET"},
        )
    assert response.status_code == 202, response.content
    assert Message.objects.get().content == "by GET"


# --- Signatures (RingRx SMS callbacks carry the AuthToken header) ---------------------------

RINGRX_BODY = {
    "from": "8185551234",
    "to": "8185559876",
    "message": "Test callback",
    "timestamp": "2019-02-15T23:48:54+00:00",
    "uuid": "6ed8654e-a9d1-4a7c-9502-581210d0985f",
}


@pytest.fixture
def ringrx(tenant_a: Any) -> dict[str, Any]:
    installation = InstallationFactory(
        organization=tenant_a.org,
        spec_version=builtin_version("ringrx-sms"),
        properties={"API URL": "http://127.0.0.1:9", "API Token": "tok"},
        secret_properties={"API Secret": "sec", "Callback Token": "cb-secret-123"},
    )
    number = bound_number(tenant_a.org, installation, "+18185559876")
    return {"number": number, "url": f"/services/ringrx-sms/a{tenant_a.account.pk}"}


@pytest.mark.parametrize("headers", [{}, {"HTTP_AUTHTOKEN": "wrong"}], ids=["unsigned", "bad"])
def test_unsigned_or_badly_signed_request_is_401_and_nothing_is_stored(
    client: Any, django_capture_on_commit_callbacks: Any, ringrx: dict[str, Any], headers: dict
) -> None:
    response = _post(
        client,
        ringrx["url"],
        json.dumps(RINGRX_BODY),
        django_capture_on_commit_callbacks,
        **headers,
    )
    assert response.status_code == 401, response.content
    assert "cb-secret-123" not in response.content.decode()
    _nothing_stored()


def test_signed_request_is_accepted_once_per_provider_id(
    client: Any, django_capture_on_commit_callbacks: Any, ringrx: dict[str, Any], tenant_a: Any
) -> None:
    body = json.dumps(RINGRX_BODY)
    first = _post(
        client,
        ringrx["url"],
        body,
        django_capture_on_commit_callbacks,
        HTTP_AUTHTOKEN="cb-secret-123",
    )
    again = _post(
        client,
        ringrx["url"],
        body,
        django_capture_on_commit_callbacks,
        HTTP_AUTHTOKEN="cb-secret-123",
    )

    assert first.status_code == 202, first.content
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    message = Message.objects.get()
    assert message.organization == tenant_a.org
    assert message.messageid == RINGRX_BODY["uuid"]
    assert (message.from_number, message.content) == ("+18185551234", "Test callback")
    event = InboxEvent.objects.get()
    assert "cb-secret-123" not in json.dumps(event.headers)


def test_inbound_over_real_http_from_the_sms_sandbox(
    live_server: Any, tenant_a: Any, sms_server: Any, settings: Any
) -> None:
    """The sandbox's own helpers post both seed models to a running portal."""
    installation = sms_installation(tenant_a.org, sms_server)
    bound_number(tenant_a.org, installation, SEED_TO, users=[tenant_a.pbx_user])
    url = f"{live_server.url}/services/example-sms/a{tenant_a.account.pk}"

    message = sms_server.post_inbound_message(url, "+61855555555", SEED_TO, "Hello there!")
    file = sms_server.post_inbound_file(
        url, "+61855555555", SEED_TO, sms_server.media_url(), "Sending a file"
    )
    unknown = sms_server.post_inbound_message(url, "+61855555555", "+61123456000", "lost?")

    assert (message.status_code, file.status_code, unknown.status_code) == (202, 202, 404)
    contents = sorted(Message.objects.values_list("content", flat=True))
    assert contents == ["Hello there!", "Sending a file"]
