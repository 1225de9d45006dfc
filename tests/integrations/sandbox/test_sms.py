"""The SMS provider sandbox: send endpoint, inbound webhook helpers and their signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from integrations.sandbox.recorder import RecorderSandbox
from integrations.sandbox.sms import (
    SmsProviderSandbox,
    ed25519_keypair,
    twilio_inbound_params,
    twilio_signature,
)

MESSAGE = {
    "from": "+61855555555",
    "to": "+61123456789",
    "extension": "1001",
    "domain": "customer.ringrx.com",
    "content": "Hello there!",
}


@pytest.fixture
def portal():
    """Stands in for Patchbay's inbound endpoint."""
    with RecorderSandbox() as server:
        yield server


def test_send_message_returns_the_template_shape(sms_server: SmsProviderSandbox) -> None:
    response = requests.post(sms_server.url + "/webhook", json=MESSAGE, timeout=5)
    assert response.status_code == 200
    message_id = response.json()["data"]["id"]
    sent = sms_server.sent_messages[0]
    assert sent["id"] == message_id
    assert sent["kind"] == "message"
    assert sent["content"] == "Hello there!"
    assert sent["domain"] == "customer.ringrx.com"
    read = requests.get(sms_server.url + f"/messages/{message_id}", timeout=5)
    assert read.json()["data"]["to"] == "+61123456789"


def test_send_file(sms_server: SmsProviderSandbox) -> None:
    body = {**MESSAGE, "content": None, "media_url": sms_server.media_url("sample.jpg")}
    response = requests.post(sms_server.url + "/messages", json=body, timeout=5)
    assert response.status_code == 200
    assert sms_server.messages_to("+61123456789")[0]["kind"] == "file"
    media = requests.get(sms_server.media_url("sample.jpg"), timeout=5)
    assert media.headers["Content-Type"] == "image/jpeg"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"from": None}, "from"),
        ({"to": "not a number"}, "to"),
        ({"content": ""}, "content"),
        ({"content": None, "media_url": "ftp://x"}, "media_url"),
    ],
)
def test_send_validation_names_the_field(
    sms_server: SmsProviderSandbox, change: dict, field: str
) -> None:
    response = requests.post(sms_server.url + "/webhook", json={**MESSAGE, **change}, timeout=5)
    assert response.status_code == 400
    assert response.json()["error"]["field"] == field
    assert sms_server.sent_messages == []


def test_api_key_when_configured(sms_server: SmsProviderSandbox) -> None:
    sms_server.configure(api_key="k123")
    assert requests.post(sms_server.url + "/webhook", json=MESSAGE, timeout=5).status_code == 401
    ok = requests.post(
        sms_server.url + "/webhook",
        json=MESSAGE,
        headers={"Authorization": "Bearer k123"},
        timeout=5,
    )
    assert ok.status_code == 200


def test_provider_without_ids(sms_server: SmsProviderSandbox) -> None:
    sms_server.configure(return_message_id=False)
    response = requests.post(sms_server.url + "/webhook", json=MESSAGE, timeout=5)
    assert response.json() == {"data": {}}


def test_inbound_message_and_file_models(
    sms_server: SmsProviderSandbox, portal: RecorderSandbox
) -> None:
    url = portal.url + "/services/svc1/a42"
    sms_server.post_inbound_message(url, "+61855555555", "+61123456789", "Hello there!")
    sms_server.post_inbound_file(
        url, "+61855555555", "+61123456789", "https://your.server.com/f.jpeg", "Sending a file"
    )
    message, file = portal.requests_to("/services/svc1/a42")
    assert message.json == {
        "method": "message",
        "params": {"from": "+61855555555", "to": "+61123456789", "content": "Hello there!"},
    }
    assert file.json == {
        "method": "file",
        "params": {
            "from": "+61855555555",
            "to": "+61123456789",
            "text": "Sending a file",
            "url": "https://your.server.com/f.jpeg",
        },
    }
    assert [p["kind"] for p in sms_server.inbound_posts] == ["json", "json"]


def test_status_event(sms_server: SmsProviderSandbox, portal: RecorderSandbox) -> None:
    sms_server.post_status(portal.url + "/s", "msg_1", "delivered", message_ref="ref-1")
    assert portal.last("/s").json == {
        "method": "status",
        "params": {"id": "msg_1", "status": "delivered", "message_ref": "ref-1"},
    }


def test_twilio_signature_matches_twilios_published_example() -> None:
    # From Twilio's request-validation documentation and its helper library's tests.
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+14158675309",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
    }
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert twilio_signature(url, params, "12345") == "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def independent_twilio_signature(url: str, form: dict[str, list[str]], token: str) -> str:
    data = url + "".join(k + v for k in sorted(form) for v in sorted(form[k]))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def test_signed_form_with_numbered_media_verifies(
    sms_server: SmsProviderSandbox, portal: RecorderSandbox
) -> None:
    url = portal.url + "/services/twilio/a1"
    params = twilio_inbound_params(
        "+14155550100",
        "+14155550199",
        "look at these",
        media_urls=[sms_server.media_url("sample.jpg"), sms_server.media_url("sample.pdf")],
        media_types=["image/jpeg", "application/pdf"],
    )
    response = sms_server.post_signed_form(url, params, "auth-token-xyz")
    assert response.status_code == 200
    received = portal.last("/services/twilio/a1")
    assert received.form["NumMedia"] == ["2"]
    assert received.form["MediaUrl1"] == [sms_server.media_url("sample.pdf")]
    assert received.form["MediaContentType1"] == ["application/pdf"]
    signature = received.header("X-Twilio-Signature")
    assert signature == independent_twilio_signature(url, received.form, "auth-token-xyz")
    assert signature != independent_twilio_signature(url, received.form, "other-token")


def test_ed25519_json_verifies_with_the_public_key(
    sms_server: SmsProviderSandbox, portal: RecorderSandbox
) -> None:
    private_key, public_hex = ed25519_keypair()
    payload = {"event_type": "message.received", "payload": {"text": "hi"}}
    sms_server.post_ed25519_json(portal.url + "/ed", payload, private_key, timestamp=1700000000)
    received = portal.last("/ed")
    assert received.json == payload
    timestamp = received.header("X-Signature-Timestamp")
    assert timestamp == "1700000000"
    signature = bytes.fromhex(received.header("X-Signature-Ed25519") or "")
    public_key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex))
    public_key.verify(signature, timestamp.encode() + received.body)  # raises if invalid
    with pytest.raises(InvalidSignature):
        public_key.verify(signature, b"1700000001" + received.body)


def test_ed25519_separator_and_base64(
    sms_server: SmsProviderSandbox, portal: RecorderSandbox
) -> None:
    private_key, public_hex = ed25519_keypair()
    sms_server.post_ed25519_json(
        portal.url + "/telnyx",
        {"a": 1},
        private_key,
        separator="|",
        encoding="base64",
        signature_header="telnyx-signature-ed25519",
        timestamp_header="telnyx-timestamp",
    )
    received = portal.last("/telnyx")
    signature = base64.b64decode(received.header("telnyx-signature-ed25519") or "")
    signed = (received.header("telnyx-timestamp") or "").encode() + b"|" + received.body
    Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex)).verify(signature, signed)


def test_inbound_helpers_refuse_non_loopback(sms_server: SmsProviderSandbox) -> None:
    with pytest.raises(ValueError, match="loopback"):
        sms_server.post_inbound_message("http://203.0.113.5/hook", "+1", "+2", "x")
