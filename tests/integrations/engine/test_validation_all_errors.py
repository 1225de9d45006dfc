"""Schema errors: every one is reported with its own pointer, also under a oneOf-like choice.

A method, a step list, the `Webhook` block and property objects all accept two shapes; a
mistake in one of them must not hide the others (DESIGN 4.7: every problem, each with the JSON
pointer of the offending value).
"""

from __future__ import annotations

import json
from typing import Any

from integrations.engine.spec import validate_spec
from tests.integrations.engine.seed_examples import crm_seed_spec_text, sms_seed_spec_text


def crm() -> dict[str, Any]:
    return json.loads(crm_seed_spec_text())


def messages(data: dict[str, Any]) -> list[str]:
    return [str(p) for p in validate_spec(data)]


def test_every_schema_error_of_a_method_is_reported() -> None:
    data = crm()
    data["API"]["FindContact"].update(success_codes=[99], timeout=0, retry_safe="yes")
    problems = messages(data)
    assert any(m.startswith("/API/FindContact/success_codes/0:") for m in problems), problems
    assert any(m.startswith("/API/FindContact/timeout:") for m in problems), problems
    assert any(m.startswith("/API/FindContact/retry_safe:") for m in problems), problems
    assert len(problems) == 3, problems


def test_two_errors_in_one_step_of_a_step_list_are_both_reported() -> None:
    data = crm()
    data["API"]["CreateContact"] = [
        {"request_method": "GET", "request_path": "/contacts"},
        {"request_method": "FETCH", "request_path": "/contacts", "timeout": -1},
    ]
    problems = messages(data)
    assert any(m.startswith("/API/CreateContact/1/request_method:") for m in problems), problems
    assert any(m.startswith("/API/CreateContact/1/timeout:") for m in problems), problems
    assert len(problems) == 2, problems


def test_errors_in_two_steps_are_both_reported() -> None:
    data = crm()
    data["API"]["CreateContact"] = [
        {"request_method": "GET", "request_path": "/contacts", "success_codes": []},
        {"request_method": "POST", "request_path": "/contacts", "retry_safe": 1},
    ]
    problems = messages(data)
    assert any(m.startswith("/API/CreateContact/0/success_codes:") for m in problems), problems
    assert any(m.startswith("/API/CreateContact/1/retry_safe:") for m in problems), problems


def test_an_empty_step_list_is_reported_as_such() -> None:
    data = crm()
    data["API"]["CreateContact"] = []
    problems = messages(data)
    assert problems == ["/API/CreateContact: [] should be non-empty"], problems


def test_a_method_that_is_neither_object_nor_list_names_both_shapes() -> None:
    data = crm()
    data["API"]["CreateContact"] = "POST /contacts"
    problems = messages(data)
    assert len(problems) == 1, problems
    assert problems[0].startswith("/API/CreateContact:")
    assert "object" in problems[0] and "array" in problems[0]


def test_every_webhook_model_without_event_key_is_reported() -> None:
    data = json.loads(sms_seed_spec_text())
    for model in data["Webhook"]:
        del model["event_key"]
    problems = messages(data)
    assert "/Webhook/0: 'event_key' is a required property" in problems, problems
    assert "/Webhook/1: 'event_key' is a required property" in problems, problems


def test_webhook_object_form_reports_model_and_signature_errors() -> None:
    data = json.loads(sms_seed_spec_text())
    models = data["Webhook"]
    del models[0]["event_key"]
    data["Webhook"] = {"models": models, "signature": {"type": "hmac-md5", "header": "X"}}
    problems = messages(data)
    assert "/Webhook/models/0: 'event_key' is a required property" in problems, problems
    assert any(m.startswith("/Webhook/signature/type:") for m in problems), problems


def test_every_error_of_a_property_object_is_reported() -> None:
    data = crm()
    data["properties"] = [
        "Instance URL",
        "Client ID",
        "Client Secret",
        {"name": "Region", "type": "dropdown", "required": "no"},
    ]
    problems = messages(data)
    assert any(m.startswith("/properties/3/type:") for m in problems), problems
    assert any(m.startswith("/properties/3/required:") for m in problems), problems
    assert len(problems) == 2, problems


def test_unknown_key_names_the_key_its_pointer_and_a_close_match() -> None:
    data = crm()
    data["API"]["FindContact"]["timout"] = 5
    assert messages(data) == [
        "/API/FindContact/timout: unknown key 'timout' (did you mean 'timeout'?)"
    ]


def test_unknown_keys_inside_steps_webhooks_and_top_level_each_get_a_problem() -> None:
    data = crm()
    data["resource_ur"] = "https://x"
    data["API"]["CreateContact"] = [
        {"request_method": "POST", "request_path": "/contacts", "respons_map": {}, "zzz": 1}
    ]
    problems = messages(data)
    assert "/resource_ur: unknown key 'resource_ur' (did you mean 'resource_url'?)" in problems
    assert (
        "/API/CreateContact/0/respons_map: unknown key 'respons_map' (did you mean 'response_map'?)"
        in problems
    )
    assert "/API/CreateContact/0/zzz: unknown key 'zzz'" in problems
    sms = json.loads(sms_seed_spec_text())
    sms["Webhook"][1]["evnt_type"] = "mms"
    assert "/Webhook/1/evnt_type: unknown key 'evnt_type' (did you mean 'event_type'?)" in (
        messages(sms)
    )


def test_extension_keys_are_still_allowed() -> None:
    data = crm()
    data["x-notes"] = "mine"
    data["API"]["FindContact"]["_comment"] = "kept"
    assert validate_spec(data) == []
