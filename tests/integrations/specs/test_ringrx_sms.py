"""ringrx-sms against the RingRx sandbox: token exchange, refresh, fallback, and SMS callbacks."""

from __future__ import annotations

import json
import time

import pytest

from integrations.engine.auth import InMemoryTokenStore, TokenSet
from integrations.engine.client import SpecClient
from integrations.engine.errors import IntegrationError
from integrations.engine.http import AttemptRecord, HttpSession
from integrations.engine.signatures import SignatureInvalid
from integrations.engine.webhooks import WebhookMatch, match_webhook
from integrations.sandbox.recorder import RecorderSandbox
from integrations.sandbox.ringrx import (
    DEFAULT_API_SECRET,
    DEFAULT_API_TOKEN,
    RingRxSandbox,
    callback_payload,
)
from tests.integrations.specs.conftest import builtin_spec
from tests.integrations.specs.contract import (
    DoorCall,
    DoorSetup,
    HttpDoorContract,
    RecordedExchanges,
)

SPEC_ID = "ringrx-sms"
CALLBACK_TOKEN = "DESIGN-thick-because-guard"
SMS = {"from": "+18185559876", "to": "+18185551234", "content": "See you at 10:00"}
# The seed's SMS callback body, verbatim.
SEED_CALLBACK = """{
  "from" : "8185551234",
  "to" : "8185559876",
  "message" : "Test callback",
  "timestamp" : "2019-02-15T23:48:54+00:00",
  "uuid" : "6ed8654e-a9d1-4a7c-9502-581210d0985f"
}"""


def ringrx_client(
    server: RingRxSandbox,
    store: InMemoryTokenStore | None = None,
    attempts: list[AttemptRecord] | None = None,
    session: HttpSession | None = None,
    base_url: str | None = None,
) -> SpecClient:
    return SpecClient(
        builtin_spec(SPEC_ID),
        properties={
            "API URL": base_url or server.url,
            "API Token": DEFAULT_API_TOKEN,
            "API Secret": DEFAULT_API_SECRET,
            "Callback Token": CALLBACK_TOKEN,
        },
        token_store=store,
        session=session,
        allow_private_networks=True,
        on_attempt=attempts.append if attempts is not None else None,
    )


def paths(server: RingRxSandbox) -> list[tuple[str, int | None]]:
    return [(r.path, r.status) for r in server.requests]


def callback(body: bytes, headers: dict[str, str]) -> WebhookMatch | None:
    return match_webhook(
        builtin_spec(SPEC_ID),
        method="POST",
        content_type="application/json",
        body=body,
        query={},
        headers=headers,
        properties={"Callback Token": CALLBACK_TOKEN},
    )


class TestRingRxHttpDoor(HttpDoorContract):
    spec_id = SPEC_ID

    @pytest.fixture
    def door(self, ringrx_server: RingRxSandbox) -> DoorSetup:
        def connect(session: HttpSession, base_url: str | None = None) -> SpecClient:
            if base_url is None:  # the first call exchanges the API key for a token
                return ringrx_client(ringrx_server, session=session)
            store = InMemoryTokenStore(TokenSet("jwt", "refresh", time.time() + 3600))
            return ringrx_client(ringrx_server, store, session=session, base_url=base_url)

        return DoorSetup(
            server=ringrx_server,
            connect=connect,
            write=DoorCall("SendMessage", SMS, "/sms", "messageid"),
        )


class TestRingRxRecorded(RecordedExchanges):
    spec_id = SPEC_ID
    replay_values = {"API URL": "https://portal.ringrx.example"}


# -- sending and authentication ----------------------------------------------------------


def test_the_first_send_exchanges_the_api_key_for_a_token(ringrx_server: RingRxSandbox) -> None:
    store = InMemoryTokenStore()

    result = ringrx_client(ringrx_server, store).call("SendMessage", SMS)

    (sent,) = ringrx_server.sent_sms
    assert result.to_json() == {"messageid": sent["id"], "status": "queued"}
    assert sent["message"] == "See you at 10:00"
    exchange = ringrx_server.last("/auth/token")
    assert exchange is not None
    assert exchange.query == {"token": [DEFAULT_API_TOKEN], "secret": [DEFAULT_API_SECRET]}
    tokens = store.load()
    assert tokens is not None and tokens.refresh_token
    send = ringrx_server.last("/sms")
    assert send is not None
    assert send.header("Authorization") == f"Bearer {tokens.access_token}"
    assert send.json == {
        "from": "+18185559876",
        "to": "+18185551234",
        "message": "See you at 10:00",
    }


def test_the_token_is_reused(ringrx_server: RingRxSandbox) -> None:
    client = ringrx_client(ringrx_server)

    client.call("SendMessage", SMS)
    client.call("SendMessage", SMS)

    assert [p for p, _ in paths(ringrx_server)] == ["/auth/token", "/sms", "/sms"]


def test_send_file(ringrx_server: RingRxSandbox) -> None:
    params = {**SMS, "content": "https://files.example/scan.pdf", "text": "Your referral"}

    result = ringrx_client(ringrx_server).call("SendFile", params)

    assert result.first()["media_urls"] == ["https://files.example/scan.pdf"]
    assert ringrx_server.last("/sms").json == {  # type: ignore[union-attr]
        "from": "+18185559876",
        "to": "+18185551234",
        "message": "Your referral",
        "media_urls": ["https://files.example/scan.pdf"],
    }


def test_an_expired_token_is_refreshed_once(ringrx_server: RingRxSandbox) -> None:
    store = InMemoryTokenStore()
    client = ringrx_client(ringrx_server, store)
    client.call("SendMessage", SMS)
    first = store.load()
    assert first is not None
    ringrx_server.advance_clock(3700)

    client.call("SendMessage", SMS)

    assert paths(ringrx_server) == [
        ("/auth/token", 200),
        ("/sms", 200),
        ("/sms", 401),
        ("/auth/refresh", 200),
        ("/sms", 200),
    ]
    refresh = ringrx_server.last("/auth/refresh")
    assert refresh is not None and refresh.query == {"refresh_token": [first.refresh_token]}
    renewed = store.load()
    assert renewed is not None and renewed.access_token != first.access_token


def test_a_refused_refresh_falls_back_to_a_new_token(ringrx_server: RingRxSandbox) -> None:
    client = ringrx_client(ringrx_server)
    client.call("SendMessage", SMS)
    ringrx_server.advance_clock(90_000)  # past the refresh token's lifetime too

    client.call("SendMessage", SMS)

    assert paths(ringrx_server)[2:] == [
        ("/sms", 401),
        ("/auth/refresh", 401),
        ("/auth/token", 200),
        ("/sms", 200),
    ]
    assert len(ringrx_server.sent_sms) == 2


def test_a_deleted_api_key_is_auth_failed(ringrx_server: RingRxSandbox) -> None:
    client = ringrx_client(ringrx_server)
    client.call("SendMessage", SMS)
    ringrx_server.api_keys.clear()

    with pytest.raises(IntegrationError) as caught:
        client.call("SendMessage", SMS)

    assert caught.value.auth_failed is True
    assert caught.value.status == 401
    assert "reconnect" in caught.value.message


def test_the_api_secret_never_reaches_the_delivery_log(ringrx_server: RingRxSandbox) -> None:
    attempts: list[AttemptRecord] = []

    ringrx_client(ringrx_server, attempts=attempts).call("SendMessage", SMS)

    token_attempt = attempts[0]
    assert token_attempt.method_name == "authentication"
    assert "/auth/token" in token_attempt.url_redacted
    logged = json.dumps([a.__dict__ for a in attempts])
    assert DEFAULT_API_SECRET not in logged
    assert "[redacted]" in token_attempt.url_redacted


def test_a_number_that_cannot_send_is_a_permanent_error(ringrx_server: RingRxSandbox) -> None:
    with pytest.raises(IntegrationError) as caught:
        ringrx_client(ringrx_server).call("SendMessage", {**SMS, "from": "+18885439876"})

    assert caught.value.status == 422
    assert caught.value.permanent is True
    assert "not an SMS-enabled number" in caught.value.message


def private_ringrx_client(attempts: list[AttemptRecord]) -> SpecClient:
    """A client whose API URL is a private address, with no token yet (guard on)."""
    return SpecClient(
        builtin_spec(SPEC_ID),
        properties={
            "API URL": "http://10.0.0.1",
            "API Token": DEFAULT_API_TOKEN,
            "API Secret": DEFAULT_API_SECRET,
        },
        on_attempt=attempts.append,
    )


def test_a_private_api_url_refuses_the_token_exchange_before_the_secret_leaves() -> None:
    attempts: list[AttemptRecord] = []

    # The loopback-only network guard of tests/conftest.py fails the test on a connect.
    with pytest.raises(IntegrationError) as caught:
        private_ringrx_client(attempts).call("SendMessage", SMS)

    assert DEFAULT_API_SECRET not in caught.value.message
    token_attempt = attempts[0]
    assert token_attempt.method_name == "authentication"
    assert "Refused to connect to 10.0.0.1: private network addresses" in (
        token_attempt.error or ""
    )
    assert [a.status for a in attempts] == [None] * len(attempts)  # nothing ever answered


def test_a_refused_token_exchange_says_why() -> None:
    with pytest.raises(IntegrationError) as caught:
        private_ringrx_client([]).call("SendMessage", SMS)

    assert "private network addresses are not allowed" in caught.value.message
    assert caught.value.auth_failed is False


# -- the SMS callback --------------------------------------------------------------------


def test_the_seeds_callback_body_is_a_message() -> None:
    match = callback(SEED_CALLBACK.encode(), {"AuthToken": CALLBACK_TOKEN})

    assert match is not None
    assert match.event_type == "message"
    assert match.values == {
        "event_key": "sms",
        "from": "+18185551234",
        "to": "+18185559876",
        "content": "Test callback",
        "sent_at": "2019-02-15T23:48:54Z",
        "messageid": "6ed8654e-a9d1-4a7c-9502-581210d0985f",
    }


def test_a_callback_sent_by_ringrx_is_matched(
    ringrx_server: RingRxSandbox, recorder_server: RecorderSandbox
) -> None:
    payload = callback_payload("sms", message="Running late")
    ringrx_server.send_callback(
        recorder_server.url + "/services/ringrx-sms/a1?from={from}",
        "sms",
        payload,
        headers=f"AuthToken:{CALLBACK_TOKEN}",
    )
    received = recorder_server.last("/services/ringrx-sms/a1")
    assert received is not None

    match = callback(received.body, received.headers)

    assert match is not None
    assert match.values["content"] == "Running late"
    assert match.values["messageid"] == payload["uuid"]
    assert match.values["from"] == "+18185551234"


@pytest.mark.parametrize("headers", [{}, {"AuthToken": "guessed"}])
def test_a_callback_without_the_token_is_refused(headers: dict[str, str]) -> None:
    with pytest.raises(SignatureInvalid) as caught:
        callback(SEED_CALLBACK.encode(), headers)

    assert caught.value.status == 401
    assert CALLBACK_TOKEN not in caught.value.message
