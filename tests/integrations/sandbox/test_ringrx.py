"""The RingRx sandbox: token exchange, refresh, expiry, SMS and callbacks."""

from __future__ import annotations

import base64

import pytest
import requests
from standardwebhooks.webhooks import Webhook

from integrations.sandbox.recorder import RecorderSandbox
from integrations.sandbox.ringrx import (
    DEFAULT_API_SECRET,
    DEFAULT_API_TOKEN,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    RingRxSandbox,
    callback_payload,
    jwt_claims_unverified,
    replace_tokens,
)


def get_tokens(server: RingRxSandbox) -> dict:
    response = requests.post(
        server.url + "/auth/token",
        params={"token": DEFAULT_API_TOKEN, "secret": DEFAULT_API_SECRET},
        timeout=5,
    )
    assert response.status_code == 200
    return response.json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def receiver():
    with RecorderSandbox() as server:
        yield server


def test_api_key_exchange_returns_the_seed_token_object(ringrx_server: RingRxSandbox) -> None:
    tokens = get_tokens(ringrx_server)
    assert set(tokens) == {"token_type", "access_token", "expires_in", "refresh_token"}
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 3600
    claims = jwt_claims_unverified(tokens["access_token"])
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["typ"] == "access"


def test_username_password_also_work(ringrx_server: RingRxSandbox) -> None:
    response = requests.post(
        ringrx_server.url + "/auth/token",
        json={"username": DEFAULT_USERNAME, "password": DEFAULT_PASSWORD},
        timeout=5,
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    "params",
    [
        {"token": DEFAULT_API_TOKEN, "secret": "wrong"},
        {"token": "unknown", "secret": DEFAULT_API_SECRET},
        {"username": DEFAULT_USERNAME, "password": "wrong"},
    ],
)
def test_bad_credentials_are_401(ringrx_server: RingRxSandbox, params: dict) -> None:
    response = requests.post(ringrx_server.url + "/auth/token", params=params, timeout=5)
    assert response.status_code == 401
    assert response.json() == {"message": "Not Authenticated"}


def test_requests_need_a_bearer_token(ringrx_server: RingRxSandbox) -> None:
    assert requests.get(ringrx_server.url + "/myphones", timeout=5).status_code == 401
    tokens = get_tokens(ringrx_server)
    phones = requests.get(
        ringrx_server.url + "/myphones", headers=bearer(tokens["access_token"]), timeout=5
    )
    assert phones.json()["data"][0]["number"] == "+18185559876"
    # A refresh token is not an access token.
    refused = requests.get(
        ringrx_server.url + "/myphones", headers=bearer(tokens["refresh_token"]), timeout=5
    )
    assert refused.status_code == 401


def test_access_token_expires_then_refresh_works(ringrx_server: RingRxSandbox) -> None:
    ringrx_server.configure(token_lifetime=30)
    tokens = get_tokens(ringrx_server)
    assert tokens["expires_in"] == 30
    ringrx_server.advance_clock(31)
    expired = requests.get(
        ringrx_server.url + "/myphones", headers=bearer(tokens["access_token"]), timeout=5
    )
    assert expired.status_code == 401
    refreshed = requests.post(
        ringrx_server.url + "/auth/refresh",
        params={"refresh_token": tokens["refresh_token"]},
        timeout=5,
    )
    assert refreshed.status_code == 200
    new_access = refreshed.json()["access_token"]
    assert requests.get(ringrx_server.url + "/myphones", headers=bearer(new_access), timeout=5).ok


def test_refresh_tokens_are_single_use_by_default(ringrx_server: RingRxSandbox) -> None:
    tokens = get_tokens(ringrx_server)
    url = ringrx_server.url + "/auth/refresh"
    first = requests.post(url, params={"refresh_token": tokens["refresh_token"]}, timeout=5)
    second = requests.post(url, params={"refresh_token": tokens["refresh_token"]}, timeout=5)
    assert (first.status_code, second.status_code) == (200, 401)
    ringrx_server.configure(rotate_refresh_tokens=False)
    again = first.json()["refresh_token"]
    assert requests.post(url, params={"refresh_token": again}, timeout=5).ok
    assert requests.post(url, params={"refresh_token": again}, timeout=5).ok


def test_expired_refresh_token_is_401(ringrx_server: RingRxSandbox) -> None:
    tokens = get_tokens(ringrx_server)
    ringrx_server.advance_clock(86401)
    response = requests.post(
        ringrx_server.url + "/auth/refresh",
        params={"refresh_token": tokens["refresh_token"]},
        timeout=5,
    )
    assert response.status_code == 401


def test_forged_token_is_refused(ringrx_server: RingRxSandbox) -> None:
    header, _payload, signature = get_tokens(ringrx_server)["access_token"].split(".")
    forged_payload = base64.urlsafe_b64encode(b'{"typ":"access","exp":9999999999,"jti":"x"}')
    forged = f"{header}.{forged_payload.decode().rstrip('=')}.{signature}"
    response = requests.get(ringrx_server.url + "/myphones", headers=bearer(forged), timeout=5)
    assert response.status_code == 401


def test_deleting_the_api_key_invalidates_its_tokens(ringrx_server: RingRxSandbox) -> None:
    access = get_tokens(ringrx_server)["access_token"]
    deleted = requests.delete(
        ringrx_server.url + f"/myphones/api_key/{DEFAULT_API_TOKEN}",
        headers=bearer(access),
        timeout=5,
    )
    assert deleted.ok
    response = requests.get(ringrx_server.url + "/myphones", headers=bearer(access), timeout=5)
    assert response.status_code == 401


def test_sms_send_is_recorded(ringrx_server: RingRxSandbox) -> None:
    access = get_tokens(ringrx_server)["access_token"]
    sent = requests.post(
        ringrx_server.url + "/sms",
        json={"from": "+18185559876", "to": "+14155550100", "message": "hi"},
        headers=bearer(access),
        timeout=5,
    )
    assert sent.status_code == 200
    message_id = sent.json()["id"]
    assert ringrx_server.sent_sms[0]["message"] == "hi"
    read = requests.get(ringrx_server.url + f"/sms/{message_id}", headers=bearer(access), timeout=5)
    assert read.json()["status"] == "queued"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"to": "+14155550100", "message": "x"}, 400, "from"),
        ({"from": "+18185559876", "message": "x"}, 400, "to"),
        ({"from": "+18185559876", "to": "+14155550100"}, 400, "message"),
        ({"from": "+18885439876", "to": "+14155550100", "message": "x"}, 422, "from"),
    ],
)
def test_sms_validation(ringrx_server: RingRxSandbox, body: dict, status: int, field: str) -> None:
    access = get_tokens(ringrx_server)["access_token"]
    response = requests.post(
        ringrx_server.url + "/sms", json=body, headers=bearer(access), timeout=5
    )
    assert response.status_code == status
    assert response.json()["field"] == field


def test_token_replacement() -> None:
    values = {"caller": "+1 818 555", "mailbox": "1001"}
    assert (
        replace_tokens("https://x/vm?c={caller}&m={mailbox}&u={unknown}", values, url=True)
        == "https://x/vm?c=%2B1%20818%20555&m=1001&u={unknown}"
    )
    assert replace_tokens("{caller}", {"caller": "{mailbox}", "mailbox": "no"}) == "{mailbox}"


def test_send_callback_posts_json_with_tokens_auth_and_headers(
    ringrx_server: RingRxSandbox, receiver: RecorderSandbox
) -> None:
    payload = callback_payload("sms", message="Hello there")
    response = ringrx_server.send_callback(
        receiver.url + "/hooks/sms?from={from}",
        "sms",
        payload,
        headers="AuthToken:DESIGN-thick-because-guard\r\nX-To:{to}",
        username="user",
        password="pass{from}",
    )
    assert response.status_code == 200
    received = receiver.last("/hooks/sms")
    assert received.query["from"] == [payload["from"]]
    assert received.json == payload
    assert received.header("AuthToken") == "DESIGN-thick-because-guard"
    assert received.header("X-To") == payload["to"]
    expected = base64.b64encode(b"user:pass{from}").decode()
    assert received.header("Authorization") == f"Basic {expected}"


def test_send_callback_voicemail_posts_the_file(
    ringrx_server: RingRxSandbox, receiver: RecorderSandbox
) -> None:
    ringrx_server.send_callback(
        receiver.url + "/vm?caller={caller}&file={filename}",
        "voicemail",
        body=b"RIFFdata",
        content_type="audio/x-wav",
    )
    received = receiver.last("/vm")
    assert received.body == b"RIFFdata"
    assert received.header("Content-Type") == "audio/x-wav"
    assert received.query["file"] == ["voicemail-9001.wav"]


def test_send_callback_standard_webhooks_signature_verifies(
    ringrx_server: RingRxSandbox, receiver: RecorderSandbox
) -> None:
    secret = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
    ringrx_server.send_callback(receiver.url + "/cdr", "cdr", signing_secret=secret)
    received = receiver.last("/cdr")
    headers = {k.lower(): v for k, v in received.headers.items()}
    # An independent implementation (the standardwebhooks package) accepts it.
    assert Webhook(secret).verify(received.body, headers) == received.json


def test_send_callback_refuses_non_loopback(ringrx_server: RingRxSandbox) -> None:
    with pytest.raises(ValueError, match="loopback"):
        ringrx_server.send_callback("http://example.com/hook", "cdr")


@pytest.mark.parametrize(
    "kind", ["sms", "cdr", "recording", "call_alert", "outreach", "voicemail", "fax"]
)
def test_sample_payloads_exist_for_every_type(kind: str) -> None:
    assert callback_payload(kind)
