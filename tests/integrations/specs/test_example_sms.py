"""example-sms: the seed's SMS template, sending to the SMS sandbox and matching its webhooks."""

from __future__ import annotations

import json
from typing import Any

import pytest

from integrations.engine.client import SpecClient
from integrations.engine.errors import IntegrationError
from integrations.engine.http import HttpSession
from integrations.engine.webhooks import WebhookMatch, WebhookRejected, match_webhook
from integrations.sandbox.recorder import RecorderSandbox
from integrations.sandbox.sms import SmsProviderSandbox
from tests.integrations.engine.seed_examples import (
    SMS_API_BLOCK,
    WEBHOOK_FILE_BODY,
    WEBHOOK_FILE_MODEL,
    WEBHOOK_MESSAGE_BODY,
    WEBHOOK_MESSAGE_MODEL,
    fragment,
)
from tests.integrations.specs.conftest import SleepRecorder, builtin_spec
from tests.integrations.specs.contract import (
    DoorCall,
    DoorSetup,
    HttpDoorContract,
    RecordedExchanges,
)

SPEC_ID = "example-sms"
SEED_URL = "https://api.example.com/webhook"
MESSAGE = {
    "from": "+61855555555",
    "to": "+61123456789",
    "extension": "101",
    "domain": "acme.example",
    "content": "Hello there!",
}


def sms_client(
    server: SmsProviderSandbox, session: HttpSession | None = None, base_url: str | None = None
) -> SpecClient:
    return SpecClient(
        builtin_spec(SPEC_ID),
        properties={"API URL": (base_url or server.url) + "/webhook"},
        session=session,
        allow_private_networks=True,
    )


def inbound(body: str | bytes, content_type: str = "application/json") -> WebhookMatch | None:
    return match_webhook(
        builtin_spec(SPEC_ID),
        method="POST",
        content_type=content_type,
        body=body.encode() if isinstance(body, str) else body,
        query={},
        headers={"Content-Type": content_type},
    )


class TestExampleSmsHttpDoor(HttpDoorContract):
    spec_id = SPEC_ID

    @pytest.fixture
    def door(self, sms_server: SmsProviderSandbox) -> DoorSetup:
        def connect(session: HttpSession, base_url: str | None = None) -> SpecClient:
            return sms_client(sms_server, session, base_url)

        return DoorSetup(
            server=sms_server,
            connect=connect,
            write=DoorCall("SendMessage", MESSAGE, "/webhook", "messageid"),
        )


class TestExampleSmsRecorded(RecordedExchanges):
    spec_id = SPEC_ID
    replay_values = {"API URL": SEED_URL}


# -- the spec is the seed ----------------------------------------------------------------


def test_the_api_is_the_seeds_with_the_url_as_a_property() -> None:
    seed_api: dict[str, Any] = fragment(SMS_API_BLOCK)["API"]
    for method in seed_api.values():
        assert method["request_url"] == SEED_URL
        method["request_url"] = "$API URL$"

    spec = builtin_spec(SPEC_ID)

    assert spec.raw["API"] == seed_api
    assert spec.property("API URL") is not None
    assert spec.property("API URL").default == SEED_URL  # type: ignore[union-attr]


def test_the_webhook_models_are_the_seeds() -> None:
    spec = builtin_spec(SPEC_ID)

    assert spec.webhooks[0] == json.loads(WEBHOOK_MESSAGE_MODEL)
    assert spec.webhooks[1] == json.loads(WEBHOOK_FILE_MODEL)
    assert spec.webhooks[2]["event_type"] == "status"


# -- sending -----------------------------------------------------------------------------


def test_send_message(sms_server: SmsProviderSandbox) -> None:
    result = sms_client(sms_server).call("SendMessage", MESSAGE)

    (sent,) = sms_server.sent_messages
    assert result.to_json() == {"messageid": sent["id"]}
    request = sms_server.last("/webhook")
    assert request is not None
    assert request.header("Content-Type") == "application/json"
    assert request.json == MESSAGE


def test_send_file(sms_server: SmsProviderSandbox) -> None:
    params = {**MESSAGE, "content": sms_server.media_url("sample.jpg")}

    result = sms_client(sms_server).call("SendFile", params)

    (sent,) = sms_server.sent_messages
    assert result.first()["messageid"] == sent["id"]
    assert sent["kind"] == "file"
    assert sms_server.last("/webhook").json == {  # type: ignore[union-attr]
        "from": "+61855555555",
        "to": "+61123456789",
        "extension": "101",
        "domain": "acme.example",
        "media_url": sms_server.media_url("sample.jpg"),
    }


def test_unset_values_are_left_out(sms_server: SmsProviderSandbox) -> None:
    sms_client(sms_server).call(
        "SendMessage", {"from": "+61855555555", "to": "+61123456789", "content": "Hi"}
    )

    assert sms_server.last("/webhook").json == {  # type: ignore[union-attr]
        "from": "+61855555555",
        "to": "+61123456789",
        "content": "Hi",
    }


def test_a_provider_that_returns_no_id_is_not_an_error(sms_server: SmsProviderSandbox) -> None:
    sms_server.configure(return_message_id=False)

    result = sms_client(sms_server).call("SendMessage", MESSAGE)

    assert result.to_json() == {}
    assert len(sms_server.sent_messages) == 1


def test_a_rejected_message_is_a_permanent_error(sms_server: SmsProviderSandbox) -> None:
    with pytest.raises(IntegrationError) as caught:
        sms_client(sms_server).call("SendMessage", {**MESSAGE, "to": "not a number"})

    assert caught.value.status == 400
    assert caught.value.permanent is True
    assert "to must be a phone number" in caught.value.message


def test_a_5xx_on_send_is_not_retried_so_no_text_goes_twice(
    sms_server: SmsProviderSandbox, sleeps: SleepRecorder
) -> None:
    sms_server.fail_next("/webhook", status=502)
    session = HttpSession(allow_private_networks=True, sleep=sleeps)

    with pytest.raises(IntegrationError) as caught:
        sms_client(sms_server, session).call("SendMessage", MESSAGE)

    assert caught.value.permanent is False
    assert len(sms_server.requests_to("/webhook")) == 1
    assert sms_server.sent_messages == []
    assert sleeps.waits == []


def test_a_private_api_url_is_refused_by_default() -> None:
    client = SpecClient(builtin_spec(SPEC_ID), properties={"API URL": "http://10.0.0.1/webhook"})

    with pytest.raises(IntegrationError) as caught:
        client.call("SendMessage", MESSAGE)

    assert "private network addresses are not allowed" in caught.value.message


# -- receiving ---------------------------------------------------------------------------


def test_the_seeds_message_body_matches_the_message_model() -> None:
    match = inbound(WEBHOOK_MESSAGE_BODY)

    assert match is not None
    assert match.event_type == "message"
    assert match.event_key == "message"
    assert match.values == {
        "event_key": "message",
        "from": "+61855555555",
        "to": "+61123456789",
        "content": "Hello there!",
    }


def test_the_seeds_file_body_matches_the_file_model() -> None:
    match = inbound(WEBHOOK_FILE_BODY)

    assert match is not None
    assert match.event_type == "mms"
    assert match.values["text"] == "Sending a file"
    assert match.values["url"] == "https://your.server.com/files/8a8d89798as9ud.jpeg"
    assert match.values["from"] == "+61855555555"


def test_what_the_provider_posts_is_matched(
    sms_server: SmsProviderSandbox, recorder_server: RecorderSandbox
) -> None:
    path = "/services/example-sms/a1"
    sms_server.post_inbound_message(
        recorder_server.url + path, "+61855555555", "+61123456789", "Hi"
    )
    sms_server.post_inbound_file(
        recorder_server.url + path, "+61855555555", "+61123456789", sms_server.media_url(), "pic"
    )

    message, file = recorder_server.requests_to(path)
    matched = [inbound(message.body), inbound(file.body)]

    assert [m.event_type for m in matched if m] == ["message", "mms"]
    assert matched[1] is not None and matched[1].values["url"] == sms_server.media_url()


@pytest.mark.parametrize(
    ("provider_status", "status"),
    [("delivered", "delivered"), ("accepted", "queued"), ("rejected", "failed")],
)
def test_a_status_event_maps_the_providers_status(
    sms_server: SmsProviderSandbox,
    recorder_server: RecorderSandbox,
    provider_status: str,
    status: str,
) -> None:
    sms_server.post_status(recorder_server.url + "/status", "msg_1", provider_status)
    received = recorder_server.last("/status")
    assert received is not None

    match = inbound(received.body)

    assert match is not None
    assert match.event_type == "status"
    assert match.values["messageid"] == "msg_1"
    assert match.values["status"] == status
    assert match.values["provider_status"] == provider_status


def test_an_event_no_model_describes_is_ignored() -> None:
    assert inbound('{"method": "typing", "params": {"from": "+61855555555"}}') is None


def test_a_malformed_body_is_rejected() -> None:
    with pytest.raises(WebhookRejected) as caught:
        inbound('{"method": "message", ')

    assert caught.value.status == 400


def test_a_message_without_its_recipient_is_rejected() -> None:
    with pytest.raises(WebhookRejected) as caught:
        inbound('{"method": "message", "params": {"from": "+61855555555", "content": "x"}}')

    assert "$to$" in caught.value.message
