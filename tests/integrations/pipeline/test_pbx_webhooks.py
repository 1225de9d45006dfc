"""PBX webhooks: every RingRx callback type in the document's format, the normalized call
event, validation (400 naming the field), size limits (413), duplicates and unsupported
events — and the fan-out of each RingRx event to the organization's callback of that type."""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from typing import Any

import pytest
from standardwebhooks import Webhook

from integrations.callbacks import TOKEN_TABLES
from integrations.models import CallbackDelivery, DeliveryLogEntry, InboxEvent
from integrations.webhooks.base import standard_webhooks_sign
from tests.integrations.pipeline.conftest import post_hook, subscribe
from tests.integrations.pipeline.ringrx_payloads import (
    FILE_TYPES,
    JSON_TYPES,
    file_body,
    file_metadata,
    json_body,
)

pytestmark = pytest.mark.django_db

CALL = {
    "event_id": "evt-1",
    "call_id": "call-42",
    "direction": "inbound",
    "status": "answered",
    "caller_number": "(415) 555-0100",
    "caller_name": "Jane Doe",
    "called_number": "818-555-9876",
    "called_name": "Front desk",
    "extension": 101,
    "start": "2025-03-01T10:00:00Z",
    "answer": "2025-03-01T10:00:07+01:00",
    "end": None,
    "duration": 0,
    "recording_url": None,
}


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _token_url(base: str, callback_type: str) -> tuple[str, list[str]]:
    names = [n for n in TOKEN_TABLES[callback_type] if n != "event_log"][:6]
    query = "&".join(f"{name}={{{name}}}" for name in names)
    return f"{base}/{callback_type}?{query}", names


@pytest.mark.parametrize("callback_type", JSON_TYPES)
def test_each_ringrx_json_callback_is_stored_once_processed_and_forwarded(
    client: Any,
    org: Any,
    recorder: Any,
    callback_type: str,
    django_capture_on_commit_callbacks: Any,
) -> None:
    url, names = _token_url(recorder.url, callback_type)
    _, secret = subscribe(org, callback_type, url, headers=f"X-First-Token:{{{names[0]}}}")
    body = json_body(callback_type)

    with django_capture_on_commit_callbacks(execute=True):
        response = post_hook(client, org, callback_type, body)

    assert response.status_code == 202, response.content
    event = InboxEvent.objects.get()
    assert (event.source, event.event_type, event.state) == ("pbx", callback_type, "done")
    assert event.attempts == 1
    assert event.body == body.decode()
    payload = json.loads(body)
    assert event.payload == payload
    [request] = recorder.requests_to(f"/{callback_type}")
    tokens = dict(payload)
    if callback_type == "call_alert":
        tokens["caller_name"] = payload["caller_nname"]
    expected = {name: [_text(tokens.get(name))] for name in names}
    assert urllib.parse.parse_qs(request.raw_path.split("?", 1)[1], keep_blank_values=True) == {
        k: v for k, v in expected.items() if v != [""]
    } | {k: [""] for k, v in expected.items() if v == [""]}
    assert request.header("X-First-Token") == _text(tokens.get(names[0]))
    assert json.loads(request.body) == payload
    assert request.header("Content-Type") == "application/json"
    Webhook(secret).verify(request.body, dict(request.headers))
    delivery = CallbackDelivery.objects.get()
    assert (delivery.state, delivery.inbox_event_id) == ("delivered", event.pk)
    log = DeliveryLogEntry.objects.get()
    assert (log.installation, log.method_name, log.ok) == (None, f"callback:{callback_type}", True)


@pytest.mark.parametrize("callback_type", FILE_TYPES)
def test_voicemail_and_fax_files_are_stored_intact_and_forwarded_as_the_body(
    client: Any,
    org: Any,
    recorder: Any,
    callback_type: str,
    django_capture_on_commit_callbacks: Any,
) -> None:
    metadata = file_metadata(callback_type)
    content = file_body(callback_type)
    content_type = "audio/wav" if callback_type == "voicemail" else "application/pdf"
    _, secret = subscribe(
        org, callback_type, f"{recorder.url}/{callback_type}/{{mailbox}}?file={{filename}}"
    )

    with django_capture_on_commit_callbacks(execute=True):
        response = post_hook(
            client,
            org,
            callback_type,
            content,
            content_type=content_type,
            query=urllib.parse.urlencode(metadata),
        )

    assert response.status_code == 202, response.content
    event = InboxEvent.objects.get()
    assert event.state == "done"
    assert event.body == ""
    assert event.content_type == content_type
    with event.file.open("rb") as handle:
        stored = handle.read()
    assert hashlib.sha256(stored).digest() == hashlib.sha256(content).digest()
    assert event.file.name.endswith(metadata["filename"])
    assert event.normalized["size"] == len(content)
    assert event.normalized["id"] == str(metadata["id"])
    [request] = recorder.requests_to(f"/{callback_type}/{metadata['mailbox']}")
    assert request.query == {"file": [metadata["filename"]]}
    assert request.body == content
    assert request.header("Content-Type") == content_type
    expected = standard_webhooks_sign(
        secret, request.header("webhook-id"), int(request.header("webhook-timestamp")), content
    )
    assert request.header("webhook-signature") == expected


def test_a_file_webhook_without_its_id_is_400_naming_it(client: Any, org: Any) -> None:
    metadata = {k: v for k, v in file_metadata("voicemail").items() if k != "id"}

    response = post_hook(
        client,
        org,
        "voicemail",
        b"RIFF....",
        content_type="audio/wav",
        query=urllib.parse.urlencode(metadata),
    )

    assert response.status_code == 400
    assert response.json()["errors"] == {"id": ["is required"]}
    assert not InboxEvent.objects.exists()


def test_an_empty_voicemail_body_is_400(client: Any, org: Any) -> None:
    response = post_hook(
        client,
        org,
        "voicemail",
        b"",
        content_type="audio/wav",
        query=urllib.parse.urlencode(file_metadata("voicemail")),
    )

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["body"]


def test_a_fax_with_non_numeric_pages_is_400_naming_pages(client: Any, org: Any) -> None:
    metadata = {**file_metadata("fax"), "pages": "two"}

    response = post_hook(
        client,
        org,
        "fax",
        b"%PDF",
        content_type="application/pdf",
        query=urllib.parse.urlencode(metadata),
    )

    assert response.status_code == 400
    assert response.json()["errors"] == {"pages": ["must be an integer"]}


@pytest.mark.parametrize(
    ("callback_type", "change", "field", "message"),
    [
        ("sms", {"from": None}, "from", "is required"),
        ("sms", {"message": 42}, "message", "must be a string"),
        ("cdr", {"duration": "long"}, "duration", "must be an integer"),
        (
            "cdr",
            {"direction": "sideways"},
            "direction",
            "must be one of inbound, outbound, internal",
        ),
        ("cdr", {"id": None}, "id", "is required"),
        ("call_alert", {"uuid": ""}, "uuid", "is required"),
        ("outreach", {"confirmed": "maybe"}, "confirmed", "must be true or false"),
        ("outreach", {"event_log": "none"}, "event_log", "must be a list"),
    ],
)
def test_a_malformed_ringrx_field_is_400_naming_it_and_nothing_is_stored(
    client: Any, org: Any, callback_type: str, change: dict, field: str, message: str
) -> None:
    payload = {**json.loads(json_body(callback_type)), **change}

    response = post_hook(client, org, callback_type, payload)

    assert response.status_code == 400
    assert response.json() == {
        "message": f"Invalid {field}: {message}",
        "errors": {field: [message]},
    }
    assert not InboxEvent.objects.exists()


def test_a_valid_call_event_is_stored_normalized(client: Any, org: Any) -> None:
    response = post_hook(client, org, "call", CALL)

    assert response.status_code == 202
    event = InboxEvent.objects.get(pk=response.json()["id"])
    assert event.correlation_key == "call-42"
    assert event.payload == CALL
    assert event.normalized == {
        "event_id": "evt-1",
        "call_id": "call-42",
        "direction": "inbound",
        "status": "answered",
        "caller_number": "+14155550100",
        "caller_name": "Jane Doe",
        "called_number": "+18185559876",
        "called_name": "Front desk",
        "extension": "101",
        "start": "2025-03-01T10:00:00+00:00",
        "answer": "2025-03-01T09:00:07+00:00",
        "duration": 0,
        "phone": "+14155550100",
    }


def test_numbers_are_read_in_the_orgs_region(client: Any, org: Any) -> None:
    org.default_region = "GB"
    org.save()

    post_hook(
        client, org, "call", {**CALL, "direction": "outbound", "called_number": "020 7946 0018"}
    )

    normalized = InboxEvent.objects.get().normalized
    assert normalized["called_number"] == "+442079460018"
    assert normalized["phone"] == "+442079460018"


@pytest.mark.parametrize(
    ("change", "errors"),
    [
        ({"direction": "sideways"}, {"direction": ["must be one of inbound, outbound"]}),
        (
            {"status": "on hold"},
            {"status": ["must be one of ringing, answered, missed, busy, failed, completed"]},
        ),
        ({"call_id": None}, {"call_id": ["must be a string"]}),
        ({"duration": "12"}, {"duration": ["must be an integer or null"]}),
        ({"duration": -1}, {"duration": ["must be 0 or more"]}),
        (
            {"start": "yesterday"},
            {"start": ["must be an ISO 8601 date-time, e.g. 2025-01-31T14:05:00Z"]},
        ),
        ({"recording_url": "ftp://x/y"}, {"recording_url": ["must be an http(s) URL"]}),
    ],
)
def test_an_invalid_call_field_is_400_naming_it(
    client: Any, org: Any, change: dict, errors: dict
) -> None:
    response = post_hook(client, org, "call", {**CALL, **change})

    assert response.status_code == 400
    assert response.json()["errors"] == errors
    assert next(iter(errors)) in response.json()["message"]
    assert not InboxEvent.objects.exists()


def test_missing_call_fields_are_all_named(client: Any, org: Any) -> None:
    response = post_hook(client, org, "call", {"call_id": "x", "direction": "inbound"})

    assert response.status_code == 400
    assert response.json()["errors"] == {
        "status": ["is required"],
        "caller_number": ["is required"],
        "called_number": ["is required"],
    }


@pytest.mark.parametrize(
    "body", [b"{not json", b"", b"[1, 2]", b'"text"', '{"a": "\xe9"}'.encode("latin-1")]
)
def test_a_malformed_body_is_400_naming_the_body(client: Any, org: Any, body: bytes) -> None:
    response = post_hook(client, org, "call", body)

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["body"]
    assert not InboxEvent.objects.exists()


def test_a_json_body_over_the_limit_is_413(client: Any, org: Any, settings: Any) -> None:
    settings.WEBHOOK_MAX_BODY_BYTES = 1000
    body = json.dumps({**CALL, "padding": "x" * 1000})

    response = post_hook(client, org, "call", body)

    assert response.status_code == 413
    assert "1000 bytes" in response.json()["message"]
    assert not InboxEvent.objects.exists()


def test_a_file_over_the_limit_is_413_and_a_file_under_it_is_accepted(
    client: Any, org: Any, settings: Any
) -> None:
    settings.WEBHOOK_MAX_BODY_BYTES = 1000  # JSON limit: does not apply to files
    settings.WEBHOOK_MAX_FILE_BYTES = 200_000
    query = urllib.parse.urlencode(file_metadata("voicemail"))

    too_big = post_hook(
        client, org, "voicemail", b"x" * 200_001, content_type="audio/wav", query=query
    )
    fits = post_hook(
        client, org, "voicemail", b"x" * 200_000, content_type="audio/wav", query=query
    )

    assert too_big.status_code == 413
    assert fits.status_code == 202
    assert InboxEvent.objects.count() == 1


def test_a_duplicate_is_acknowledged_stored_once_and_processed_once(
    client: Any, org: Any, recorder: Any, django_capture_on_commit_callbacks: Any
) -> None:
    subscribe(org, "sms", f"{recorder.url}/sms")
    body = json_body("sms")

    with django_capture_on_commit_callbacks(execute=True):
        first = post_hook(client, org, "sms", body)
        second = post_hook(client, org, "sms", body)

    assert first.status_code == 202
    assert second.status_code == 200
    assert second.json() == {"status": "duplicate", "id": first.json()["id"]}
    event = InboxEvent.objects.get()
    assert (event.state, event.attempts) == ("done", 1)
    assert len(recorder.requests_to("/sms")) == 1


def test_call_events_are_deduplicated_by_event_id_or_by_content(client: Any, org: Any) -> None:
    assert post_hook(client, org, "call", CALL).status_code == 202
    # Same event id, other content: the same event sent again.
    assert post_hook(client, org, "call", {**CALL, "caller_name": "J. Doe"}).status_code == 200
    without_id = {k: v for k, v in CALL.items() if k != "event_id"}
    assert post_hook(client, org, "call", without_id).status_code == 202
    assert post_hook(client, org, "call", without_id).status_code == 200
    assert post_hook(client, org, "call", {**without_id, "status": "completed"}).status_code == 202

    assert InboxEvent.objects.count() == 3


def test_the_same_dedup_key_in_two_organizations_is_two_events(client: Any, org: Any) -> None:
    from tests.factories import OrganizationFactory

    other = OrganizationFactory(webhook_secret="other-secret")
    post_hook(client, org, "call", CALL)
    response = post_hook(
        client, other, "call", CALL, headers={"HTTP_X_PATCHBAY_SECRET": "other-secret"}
    )

    assert response.status_code == 202
    assert InboxEvent.objects.count() == 2


def test_an_unsupported_event_is_200_stored_as_ignored_and_not_processed(
    client: Any, org: Any, django_capture_on_commit_callbacks: Any, caplog: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = post_hook(client, org, "presence", {"user": "1001", "state": "away"})

    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    event = InboxEvent.objects.get()
    assert (event.event_type, event.state, event.attempts) == ("presence", "ignored", 0)
    assert "Unsupported event type 'presence'" in event.last_error
    assert callbacks == []
    assert "unsupported event 'presence'" in caplog.text


def test_an_unsupported_event_still_needs_credentials(client: Any, org: Any) -> None:
    response = post_hook(client, org, "presence", {"x": 1}, headers={})

    assert response.status_code == 401
    assert not InboxEvent.objects.exists()
