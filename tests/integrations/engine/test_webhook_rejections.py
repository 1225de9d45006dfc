"""What `WebhookRejected` tells a caller about a bad inbound request: each offending field by its
place in the request, with advice for the sender, the model it matched — without anyone having
to read the message text."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest

from integrations.engine.spec import Spec, load_spec
from integrations.engine.webhooks import WebhookRejected, match_webhook
from tests.integrations.engine.seed_examples import sms_seed_spec_text


def spec_with(parameters: dict[str, str], webhooks: list[dict[str, Any]]) -> Spec:
    data = json.loads(sms_seed_spec_text())
    data["parameters"] = parameters
    data["Webhook"] = webhooks
    return load_spec(data)


def seed_spec() -> Spec:
    return load_spec(sms_seed_spec_text())


def typed_spec() -> Spec:
    """The seed's message model with an integer in `params.meta` and a boolean header."""
    return spec_with(
        {"segments": "integer", "urgent": "boolean"},
        [
            {
                "event_key": "message",
                "event_type": "message",
                "request_method": "POST",
                "request_parameters": {
                    "method": "$event_key$",
                    "params": {
                        "from": "$from$",
                        "to": "$to$",
                        "content": "$content$",
                        "meta": {"segments": "$segments$"},
                    },
                },
                "request_headers": {"X-Urgent": "$urgent$"},
            }
        ],
    )


def rejection(spec: Spec, body: Any, **kw: Any) -> WebhookRejected:
    encoded = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(WebhookRejected) as caught:
        match_webhook(
            spec,
            method=kw.pop("method", "POST"),
            content_type=kw.pop("content_type", "application/json"),
            body=encoded,
            query=kw.pop("query", {}),
            headers=kw.pop("headers", {}),
            **kw,
        )
    return caught.value


# -- missing values ----------------------------------------------------------------------------


def test_a_missing_field_is_named_by_its_place_with_what_to_send() -> None:
    error = rejection(
        seed_spec(), {"method": "message", "params": {"from": "+61855555555", "content": "x"}}
    )

    assert error.status == 400
    assert error.fields == {
        "params.to": ["is missing: send the phone number the message was sent to."]
    }
    assert error.advice == ("params.to is missing: send the phone number the message was sent to.")
    assert (error.model_index, error.pointer) == (0, "/Webhook/0")
    assert "$to$" in error.message  # the spec's terms, for whoever tests the spec


def test_every_missing_field_is_named_in_the_matched_model() -> None:
    # The mms model ("file") also has params.from and params.to: named once, from model 1.
    error = rejection(seed_spec(), {"method": "file", "params": {"url": "https://x.example/f"}})

    assert list(error.fields) == ["params.from", "params.to"]
    assert error.fields["params.from"] == ["is missing: send the sender's phone number."]
    assert error.advice.startswith("params.from and params.to are missing: send the sender's")
    assert (error.model_index, error.pointer) == (1, "/Webhook/1")


def test_a_status_without_any_id_names_every_place_an_id_can_go() -> None:
    spec = spec_with(
        {},
        [
            {
                "event_key": "status",
                "event_type": "status",
                "request_method": "GET",
                "request_parameters": {
                    "kind": "$event_key$",
                    "ref": "$message_ref$",
                    "sid": "$messageid$",
                    "code": "$status$",
                },
            }
        ],
    )

    error = rejection(spec, b"", method="GET", query={"kind": ["status"], "code": ["1"]})

    assert error.fields == {
        "sid": ["is missing: send the id of the message this status is about."],
        "ref": ["is missing: send the id of the message this status is about."],
    }
    assert error.advice.startswith("sid or ref is missing")


def test_a_missing_header_value_is_named_as_a_header() -> None:
    spec = spec_with(
        {},
        [
            {
                "event_key": "message",
                "event_type": "message",
                "request_method": "POST",
                "request_parameters": {"kind": "$event_key$", "body": "$content$"},
                "request_headers": {"X-From": "$from$", "X-To": "$to$"},
            }
        ],
    )

    error = rejection(spec, {"kind": "message", "body": "x"}, headers={"X-From": "+14155550100"})

    assert error.fields == {
        "X-To header": ["is missing: send the phone number the message was sent to."]
    }


# -- values of the wrong type -------------------------------------------------------------------


def test_a_wrong_typed_field_is_named_by_its_place_with_the_type_to_send() -> None:
    body = {
        "method": "message",
        "params": {"from": "+14155550100", "to": "+14155550191", "meta": {"segments": "many"}},
    }

    error = rejection(typed_spec(), body)

    assert error.status == 400
    assert error.fields == {"params.meta.segments": ["must be a whole number, not 'many'."]}
    assert error.advice == "params.meta.segments must be a whole number, not 'many'."
    assert (error.model_index, error.pointer) == (0, "/Webhook/0")
    assert "$segments$" in error.message and "integer" in error.message


def test_every_wrong_typed_field_is_named_at_once() -> None:
    body = {"method": "message", "params": {"from": {"a": 1}, "to": ["+1"], "content": "x"}}

    error = rejection(seed_spec(), body)

    assert error.fields == {
        "params.from": ["must be a phone number written as text, not {'a': 1}."],
        "params.to": ["must be a phone number written as text, not ['+1']."],
    }


def test_a_wrong_typed_header_is_400_naming_the_header() -> None:
    body = {"method": "message", "params": {"from": "+14155550100", "to": "+14155550191"}}

    error = rejection(typed_spec(), body, headers={"X-Urgent": "perhaps"})

    assert error.fields == {"X-Urgent header": ["must be true or false, not 'perhaps'."]}


def test_a_wrong_typed_element_of_a_list_is_named_by_its_index() -> None:
    spec = spec_with(
        {"segments": "integer"},
        [
            {
                "event_key": "message",
                "event_type": "message",
                "request_method": "POST",
                "request_parameters": {
                    "type": "$event_key$",
                    "data": [{"from": "$from$", "to": "$to$", "parts": "$segments$"}],
                },
            }
        ],
    )
    body = {
        "type": "message",
        "data": [
            {"from": "+14155550100", "to": "+14155550191", "parts": 1},
            {"from": "+14155550100", "to": "+14155550191", "parts": "two"},
        ],
    }

    error = rejection(spec, body)

    assert error.fields == {"data[1].parts": ["must be a whole number, not 'two'."]}


def test_a_long_wrong_value_is_shortened() -> None:
    body = {"method": "message", "params": {"from": "+1", "to": {"x": "y" * 500}}}

    error = rejection(seed_spec(), body)

    (problem,) = error.fields["params.to"]
    assert problem.endswith("....") and len(problem) < 120
    assert "y" * 100 not in error.message


# -- bodies that cannot be read ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "problem"),
    [
        (b"{not json", "application/json", "is not valid JSON"),
        (b"\xff\xfe\x00", "application/json", "is not UTF-8 text"),
        (b"x", "multipart/form-data", "could not be parsed as multipart/form-data"),
    ],
    ids=["json", "utf8", "multipart"],
)
def test_an_unreadable_body_names_the_body(body: bytes, content_type: str, problem: str) -> None:
    error = rejection(seed_spec(), body, content_type=content_type)

    assert list(error.fields) == ["body"]
    assert error.fields["body"][0].startswith(problem)
    assert error.advice.endswith("fix the request body.")
    assert error.model_index is None


def test_a_form_body_names_its_form_field() -> None:
    spec = spec_with(
        {"segments": "integer"},
        [
            {
                "event_key": "inbound",
                "event_type": "message",
                "request_method": "POST",
                "request_parameters": {"From": "$from$", "To": "$to$", "NumSegments": "$segments$"},
            }
        ],
    )
    body = urlencode({"From": "+14155550100", "To": "+14155550191", "NumSegments": "1.5"})

    error = rejection(spec, body.encode(), content_type="application/x-www-form-urlencoded")

    assert error.fields == {"NumSegments": ["must be a whole number, not '1.5'."]}
