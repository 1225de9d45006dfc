"""Spec errors found while handling a webhook name the spec value at fault by its pointer."""

from __future__ import annotations

import json
from typing import Any

import pytest

from integrations.engine.errors import SpecError
from integrations.engine.spec import load_spec
from integrations.engine.webhooks import match_webhook
from tests.integrations.engine.seed_examples import sms_seed_spec_text

FILE_BODY = {"method": "file", "params": {"from": "+61855555555", "to": "+61123456789"}}


def spec_with_event_type(event_type: str, *, object_form: bool = False) -> Any:
    data = json.loads(sms_seed_spec_text())
    data["parameters"] = {"count": "string"}
    data["Webhook"][1]["event_type"] = event_type
    data["Webhook"][1]["request_parameters"]["params"]["count"] = "$count$"
    if object_form:
        data["Webhook"] = {"models": data["Webhook"]}
    return load_spec(data)


def post(spec: Any, body: dict[str, Any]) -> Any:
    return match_webhook(
        spec,
        method="POST",
        content_type="application/json",
        body=json.dumps(body).encode(),
        query={},
        headers={},
    )


@pytest.mark.parametrize(
    ("object_form", "pointer"),
    [(False, "/Webhook/1/event_type"), (True, "/Webhook/models/1/event_type")],
)
def test_an_event_type_outside_the_three_names_points_at_the_model(
    object_form: bool, pointer: str
) -> None:
    spec = spec_with_event_type("'sms' if $count$ else 'mms'", object_form=object_form)
    with pytest.raises(SpecError) as caught:
        post(spec, {**FILE_BODY, "params": {**FILE_BODY["params"], "count": "2"}})
    problem = caught.value.problems[0]
    assert problem.pointer == pointer
    assert problem.message == "gave 'sms', not message, mms or status"
    assert str(caught.value) == f"{pointer}: gave 'sms', not message, mms or status"


@pytest.mark.parametrize(
    ("object_form", "pointer"),
    [(False, "/Webhook/1/event_type"), (True, "/Webhook/models/1/event_type")],
)
def test_an_event_type_expression_that_fails_points_at_the_model(
    object_form: bool, pointer: str
) -> None:
    spec = spec_with_event_type("'mms' if int($count$) > 0 else 'message'", object_form=object_form)
    with pytest.raises(SpecError) as caught:
        post(spec, {**FILE_BODY, "params": {**FILE_BODY["params"], "count": "many"}})
    problem = caught.value.problems[0]
    assert problem.pointer == pointer
    assert "'many' is not a number" in problem.message
    assert str(caught.value).startswith(pointer + ": ")
