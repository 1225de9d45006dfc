"""RingRx calling a running portal: the RingRx sandbox posts every callback type, in the
document's format, to our real webhook endpoint over HTTP — Basic auth (the password is the
org's secret, never token-replaced) or a Standard Webhooks signature — with the token
replacement RingRx applies to the URL (voicemail and fax metadata in the query string)."""

from __future__ import annotations

import base64
import json
import urllib.parse
from typing import Any

import pytest

from integrations.models import InboxEvent
from tests.factories import OrganizationFactory
from tests.integrations.pipeline.conftest import SECRET, subscribe
from tests.integrations.pipeline.ringrx_payloads import (
    FILE_TYPES,
    JSON_TYPES,
    file_body,
    file_metadata,
    json_body,
)

pytestmark = pytest.mark.django_db(transaction=True)

FILE_QUERY = {
    "voicemail": "id={id}&caller={caller}&called={called}&duration={duration}"
    "&filename={filename}&mailbox={mailbox}&created_at={created_at}",
    "fax": "id={id}&caller={caller}&called={called}&pages={pages }"
    "&filename={filename}&mailbox={mailbox}&created_at={created_at}",
}


def test_every_ringrx_callback_type_posted_by_ringrx_is_accepted_and_forwarded(
    live_server: Any, ringrx_server: Any, recorder: Any
) -> None:
    org = OrganizationFactory(webhook_secret=SECRET)
    for callback_type in (*JSON_TYPES, *FILE_TYPES):
        subscribe(org, callback_type, f"{recorder.url}/{callback_type}")
    base = f"{live_server.url}/api/v1/hooks/pbx/{org.webhook_key}"

    bodies = {callback_type: json_body(callback_type) for callback_type in JSON_TYPES}
    for callback_type, body in bodies.items():
        response = ringrx_server.send_callback(
            f"{base}/{callback_type}",
            callback_type,
            json.loads(body),
            body=body,
            content_type="application/json",
            username="ringrx",
            password=SECRET,
        )
        assert response.status_code == 202, (callback_type, response.text)
    files: dict[str, bytes] = {}
    for callback_type in FILE_TYPES:
        files[callback_type] = file_body(callback_type, size=50_000)
        response = ringrx_server.send_callback(
            f"{base}/{callback_type}?{FILE_QUERY[callback_type]}",
            callback_type,
            file_metadata(callback_type),
            body=files[callback_type],
            username="{id}",  # Basic auth is never token-replaced: any username is fine
            password=SECRET,
        )
        assert response.status_code == 202, (callback_type, response.text)

    events = {e.event_type: e for e in InboxEvent.objects.all()}
    assert set(events) == {*JSON_TYPES, *FILE_TYPES}
    assert {e.state for e in events.values()} == {"done"}
    for callback_type in JSON_TYPES:
        assert events[callback_type].body == bodies[callback_type].decode()
        [forwarded] = recorder.requests_to(f"/{callback_type}")
        assert json.loads(forwarded.body) == json.loads(bodies[callback_type])
    for callback_type in FILE_TYPES:
        metadata = file_metadata(callback_type)
        assert events[callback_type].payload == {k: str(v) for k, v in metadata.items()}
        with events[callback_type].file.open("rb") as handle:
            assert handle.read() == files[callback_type]
        [forwarded] = recorder.requests_to(f"/{callback_type}")
        assert forwarded.body == files[callback_type]


def test_ringrx_signed_callbacks_are_accepted_and_a_wrong_signature_is_not(
    live_server: Any, ringrx_server: Any
) -> None:
    secret = "whsec_" + base64.b64encode(b"ringrx-signing-key-0123456789abc").decode()
    org = OrganizationFactory(webhook_secret=secret)
    wrong = "whsec_" + base64.b64encode(b"not-the-key-0123456789abcdefghij").decode()
    url = f"{live_server.url}/api/v1/hooks/pbx/{org.webhook_key}/sms"

    ok = ringrx_server.send_callback(url, "sms", signing_secret=secret)
    refused = ringrx_server.send_callback(url, "sms", signing_secret=wrong)
    unsigned = ringrx_server.send_callback(url, "sms")

    assert (ok.status_code, refused.status_code, unsigned.status_code) == (202, 401, 401)
    assert InboxEvent.objects.count() == 1


def test_token_replaced_query_values_arrive_decoded(live_server: Any, ringrx_server: Any) -> None:
    org = OrganizationFactory(webhook_secret=SECRET)
    metadata = {**file_metadata("voicemail"), "filename": "msg & {x} ünï.wav", "mailbox": "10 01"}

    response = ringrx_server.send_callback(
        f"{live_server.url}/api/v1/hooks/pbx/{org.webhook_key}/voicemail?{FILE_QUERY['voicemail']}",
        "voicemail",
        metadata,
        username="u",
        password=SECRET,
    )

    assert response.status_code == 202
    event = InboxEvent.objects.get()
    assert event.payload["filename"] == "msg & {x} ünï.wav"
    assert event.payload["mailbox"] == "10 01"
    assert urllib.parse.unquote(event.file.name).endswith(".wav")
