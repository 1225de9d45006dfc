"""Matching inbound SMS provider requests against Webhook models."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest

from integrations.engine.spec import Spec, load_spec
from integrations.engine.webhooks import InboundRequest, WebhookRejected, match_webhook
from tests.integrations.engine.seed_examples import (
    WEBHOOK_FILE_BODY,
    WEBHOOK_MESSAGE_BODY,
    sms_seed_spec_text,
)


def seed_spec() -> Spec:
    return load_spec(sms_seed_spec_text())


def post(spec: Spec, body: bytes, content_type: str = "application/json", **kw: Any) -> Any:
    return match_webhook(
        spec,
        method=kw.pop("method", "POST"),
        content_type=content_type,
        body=body,
        query=kw.pop("query", {}),
        headers=kw.pop("headers", {}),
        **kw,
    )


def test_seed_message_body_matches_the_message_model() -> None:
    match = post(seed_spec(), WEBHOOK_MESSAGE_BODY.encode())
    assert match.event_type == "message" and match.event_key == "message"
    assert match.values == {
        "event_key": "message",
        "from": "+61855555555",
        "to": "+61123456789",
        "content": "Hello there!",
    }


def test_seed_file_body_matches_the_mms_model() -> None:
    match = post(seed_spec(), WEBHOOK_FILE_BODY.encode())
    assert match.event_type == "mms" and match.model_index == 1
    assert match.values["url"] == "https://your.server.com/files/8a8d89798as9ud.jpeg"
    assert match.values["text"] == "Sending a file"


def test_undescribed_event_is_ignored() -> None:
    body = json.dumps({"method": "typing", "params": {"from": "+1"}}).encode()
    assert post(seed_spec(), body) is None


def test_malformed_json_is_rejected() -> None:
    with pytest.raises(WebhookRejected) as caught:
        post(seed_spec(), b"{not json")
    assert caught.value.status == 400 and "not valid JSON" in caught.value.message


def test_matched_model_missing_a_required_value_is_rejected() -> None:
    body = json.dumps({"method": "message", "params": {"from": "+61855555555"}}).encode()
    with pytest.raises(WebhookRejected, match=r"missing \$to\$"):
        post(seed_spec(), body)


def twilio_like_spec() -> Spec:
    data = json.loads(sms_seed_spec_text())
    data["parameters"] = {"urls": "array", "sid_status": "string"}
    data["Webhook"] = [
        {
            "event_key": "inbound",
            "event_type": "'mms' if len($urls$) > 0 else 'message'",
            "request_method": "POST",
            "request_parameters": {
                "From": "$from$",
                "To": "$to$",
                "Body": "$content$",
                "MessageSid": "$messageid$",
                "MediaUrl*": "$urls$",
            },
        },
        {
            "event_key": "status",
            "event_type": "status",
            "request_method": "GET",
            "request_parameters": {
                "kind": "$event_key$",
                "ref": "$message_ref$",
                "code": "$status$",
            },
            "status_map": {"1": "delivered", "2": "failed"},
        },
    ]
    return load_spec(data)


def test_form_body_with_numbered_media_and_event_type_expression() -> None:
    spec = twilio_like_spec()
    form = {
        "From": "+15551230000",
        "To": "+15551239999",
        "Body": "",
        "MessageSid": "SM1",
        "MediaUrl1": "https://m/2",
        "MediaUrl0": "https://m/1",
    }
    match = post(spec, urlencode(form).encode(), "application/x-www-form-urlencoded")
    assert match.event_type == "mms"
    assert match.values["urls"] == ["https://m/1", "https://m/2"]
    del form["MediaUrl0"], form["MediaUrl1"]
    match = post(spec, urlencode(form).encode(), "application/x-www-form-urlencoded")
    assert match.event_type == "message" and match.values["urls"] == []


def test_get_status_event_uses_the_query_and_status_map() -> None:
    spec = twilio_like_spec()
    match = post(spec, b"", method="GET", query={"kind": ["status"], "ref": ["r-1"], "code": ["2"]})
    assert match.event_type == "status"
    assert match.values["status"] == "failed" and match.values["provider_status"] == "2"
    assert match.values["message_ref"] == "r-1"
    assert post(spec, b"", method="GET", query={"kind": ["other"]}) is None


def test_multipart_body() -> None:
    spec = twilio_like_spec()
    boundary = "XyZ"
    parts = []
    for name, value in (("From", "+15551230000"), ("To", "+15551239999"), ("Body", "hi")):
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        )
    body = ("".join(parts) + f"--{boundary}--\r\n").encode()
    match = post(spec, body, f"multipart/form-data; boundary={boundary}")
    assert match.values["content"] == "hi" and match.event_type == "message"


def test_plain_text_body_and_headers() -> None:
    data = json.loads(sms_seed_spec_text())
    data["Webhook"] = [
        {
            "event_key": "text",
            "event_type": "message",
            "request_method": "POST",
            "request_headers": {"X-From": "$from$", "X-To": "$to$"},
            "request_body": "$content$",
        }
    ]
    spec = load_spec(data)
    match = post(
        spec,
        b"plain hello",
        "text/plain",
        headers={"x-from": "+15551230000", "X-To": "+15551239999"},
    )
    assert match.values["content"] == "plain hello"
    assert match.values["from"] == "+15551230000"


def test_index_keys_in_models() -> None:
    data = json.loads(sms_seed_spec_text())
    data["Webhook"] = [
        {
            "event_key": "message-received",
            "event_type": "message",
            "request_method": "POST",
            "request_parameters": {
                "type": "$event_key$",
                "data": {"[0]": {"from": "$from$", "to": "$to$", "text": "$text$"}},
            },
        }
    ]
    body = {"type": "message-received", "data": [{"from": "+15551230000", "to": "+15551239999"}]}
    match = post(load_spec(data), json.dumps(body).encode())
    assert match.values["from"] == "+15551230000"


def test_signature_hook_runs_before_parsing() -> None:
    data = json.loads(sms_seed_spec_text())
    data["properties"] = [{"name": "Auth Token", "type": "secret"}]
    data["Webhook"] = {
        "signature": {"type": "header", "header": "X-Token", "secret": "$Auth Token$"},
        "models": data["Webhook"],
    }
    spec = load_spec(data)
    seen: list[InboundRequest] = []

    class Unsigned(Exception):
        pass

    def verify(signature: Any, request: InboundRequest) -> None:
        seen.append(request)
        raise Unsigned(signature["type"])

    with pytest.raises(Unsigned):
        post(spec, b"{not even json", verify_signature=verify)
    assert seen[0].body == b"{not even json"
