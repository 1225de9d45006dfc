"""Loading and validating specs: schema, semantic checks, the Spec view."""

from __future__ import annotations

import copy
import json
import pathlib
import subprocess
import sys
from typing import Any

import jsonschema
import pytest

from integrations.engine.errors import Problem, SpecError
from integrations.engine.spec import (
    SCHEMA_PATH,
    SYSTEM_VALUES,
    PropertyDef,
    load_spec,
    spec_schema,
    validate_spec,
)
from tests.integrations.engine.seed_examples import (
    WEBHOOK_FILE_MODEL,
    WEBHOOK_MESSAGE_MODEL,
    crm_seed_spec_text,
    sms_seed_spec_text,
)

# Every module of the engine package, so a new one is covered without editing this list.
ENGINE_MODULES = sorted(
    f"integrations.engine.{path.stem}"
    for path in (pathlib.Path(__file__).resolve().parents[3] / "integrations" / "engine").glob(
        "*.py"
    )
    if path.stem != "__init__"
)


def crm(**overrides: Any) -> dict[str, Any]:
    data = json.loads(crm_seed_spec_text())
    data.update(overrides)
    return data


def messages(data: dict[str, Any]) -> list[str]:
    return [str(p) for p in validate_spec(data)]


# --- the seeds load as written -------------------------------------------------------------


def test_seed_crm_spec_loads() -> None:
    spec = load_spec(crm_seed_spec_text())
    assert spec.id == "ExampleCRM"
    assert spec.spec_class == "crm"
    assert spec.var_char == "$"
    assert [p.name for p in spec.properties] == ["Instance URL", "Client ID", "Client Secret"]
    # The seed's string list means required string fields.
    assert all(p.required and p.type == "string" for p in spec.properties)
    assert spec.parameters == {"user_id": "number", "user_name": "string", "contact_id": "number"}
    assert spec.type_of("user_id") == "number"  # the declaration overrides the system type
    assert spec.type_of("call_duration") == "integer"
    assert spec.has_method("FindContact") and not spec.has_method("CreateContact")


def test_seed_sms_spec_loads_with_both_webhook_models() -> None:
    spec = load_spec(sms_seed_spec_text().encode())
    assert spec.spec_class == "sms"
    assert [m["event_key"] for m in spec.webhooks] == ["message", "file"]
    assert spec.methods["SendMessage"]["request_url"] == "https://api.example.com/webhook"


def test_load_from_path_and_str_path(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "spec.json"
    path.write_text(crm_seed_spec_text())
    assert load_spec(path).id == "ExampleCRM"
    assert load_spec(str(path)).id == "ExampleCRM"


def test_brace_var_char_spec_loads() -> None:
    data = crm(var_char="{}")
    text = json.dumps(data).replace("$Instance URL$", "{Instance URL}")
    text = text.replace("$Client ID$", "{Client ID}").replace("$Client Secret$", "{Client Secret}")
    for name in ("user_id", "user_name", "contact_id", "contact_name", "phone"):
        text = text.replace(f"${name}$", "{" + name + "}")
    spec = load_spec(text)
    assert spec.var_char == "{}"


# --- every problem, with pointers ----------------------------------------------------------


def test_unknown_placeholder_is_reported_with_its_pointer() -> None:
    data = crm()
    data["API"]["FindContact"]["request_path"] = "/contacts/$phon$"
    assert "/API/FindContact/request_path: unknown placeholder $phon$" in messages(data)


def test_load_spec_raises_with_all_problems() -> None:
    data = crm()
    data["API"]["FindContact"]["request_path"] = "/contacts/$phon$"
    data["API"]["Users"]["request_headers"] = {"X-A": "$nope$"}
    data["var_char"] = "%"
    with pytest.raises(SpecError) as caught:
        load_spec(data)
    pointers = {p.pointer for p in caught.value.problems}
    assert {
        "/API/FindContact/request_path",
        "/API/Users/request_headers/X-A",
        "/var_char",
    } <= pointers
    assert all(isinstance(p, Problem) for p in caught.value.problems)


def test_names_with_spaces_properties_parameters_variables_and_system_values_are_known() -> None:
    data = crm(variables={"call_duration_millis": "$call_duration$ * 1000"})
    data["API"]["Users"]["request_parameters"] = {
        "a": "$Instance URL$",
        "b": "$user_id$",
        "c": "$call_duration_millis$",
        "d": "$call_start$ / $now$ / $webhook_url$",
    }
    assert validate_spec(data) == []


def test_response_map_captures_must_be_declared() -> None:
    data = crm()
    data["API"]["Users"]["response_map"] = {"records": [{"Id": "$user_id$", "Mail": "$mail$"}]}
    assert (
        "/API/Users/response_map/records/0/Mail: captures undeclared name $mail$ "
        "(declare it in parameters)" in messages(data)
    )


def test_response_map_cannot_capture_a_property() -> None:
    data = crm()
    data["API"]["Users"]["response_map"] = {"url": "$Instance URL$"}
    assert any("cannot be captured" in m for m in messages(data))


def test_system_values_can_be_captured() -> None:
    data = crm()
    data["API"]["Users"]["response_map"] = {"records": [{"Email": "$user_email$"}]}
    assert validate_spec(data) == []


def test_method_without_url() -> None:
    data = crm()
    del data["API"]["Users"]["request_path"]
    assert "/API/Users: method has no request_path or request_url" in messages(data)


def test_request_path_requires_resource_url() -> None:
    data = crm()
    del data["resource_url"]
    assert "/API/Users/request_path: request_path needs a top-level resource_url" in messages(data)


def test_bad_var_char() -> None:
    assert "/var_char: '#' is not one of '$', '{}'" in messages(crm(var_char="#"))


def test_crm_without_find_contact() -> None:
    data = crm()
    del data["API"]["FindContact"]
    assert "/API: a crm spec needs a FindContact method" in messages(data)


def test_sms_without_send_message() -> None:
    data = json.loads(sms_seed_spec_text())
    del data["API"]["SendMessage"]
    assert "/API: an sms spec needs a SendMessage method" in messages(data)


def test_webhook_model_without_event_key() -> None:
    data = json.loads(sms_seed_spec_text())
    del data["Webhook"][0]["event_key"]
    assert any(m.startswith("/Webhook/0:") and "event_key" in m for m in messages(data))


def test_webhook_event_type_may_be_an_expression() -> None:
    data = json.loads(sms_seed_spec_text())
    data["parameters"] = {"urls": "array"}
    data["Webhook"][1]["event_type"] = "'mms' if len($urls$) > 0 else 'message'"
    assert validate_spec(data) == []
    data["Webhook"][1]["event_type"] = "sms"
    assert any(m.startswith("/Webhook/1/event_type:") for m in messages(data))


def test_webhook_object_form_with_signature() -> None:
    data = json.loads(sms_seed_spec_text())
    data["properties"] = [{"name": "Auth Token", "type": "secret", "required": True}]
    data["Webhook"] = {
        "signature": {
            "type": "hmac-sha1",
            "header": "X-Twilio-Signature",
            "secret": "$Auth Token$",
            "payload": "url+sorted-params",
            "encoding": "base64",
        },
        "models": [json.loads(WEBHOOK_MESSAGE_MODEL), json.loads(WEBHOOK_FILE_MODEL)],
    }
    spec = load_spec(data)
    assert spec.webhook_signature is not None and spec.webhook_signature["type"] == "hmac-sha1"
    assert len(spec.webhooks) == 2
    data["Webhook"]["signature"] = {"type": "hmac-sha256", "secret": "$Nope$"}
    problems = messages(data)
    assert "/Webhook/signature/secret: unknown placeholder $Nope$" in problems
    assert any("needs the header" in m for m in problems)


def test_unknown_auth_type() -> None:
    data = crm(authentication={"type": "magic"})
    assert (
        "/authentication/type: unknown authentication type 'magic' "
        "(expected one of basic, bearer, oauth2, token, none)" in messages(data)
    )


def test_auth_fields_required_per_type_and_placeholders_checked() -> None:
    data = crm(authentication={"type": "basic", "username": "$Client ID$"})
    assert any("password" in m for m in messages(data))
    data = crm(authentication={"type": "bearer", "token": "token=$API Key$"})
    assert "/authentication/token: unknown placeholder $API Key$" in messages(data)


def test_token_auth_methods_are_validated_like_methods() -> None:
    data = crm(
        authentication={
            "type": "token",
            "request": {"request_method": "POST", "request_path": "/auth?token=$Client ID$"},
            "refresh": {"request_method": "POST", "request_path": "/auth/refresh/$oops$"},
            "response_map": {"access_token": "$access_token$", "expires": "$expires_in$"},
        }
    )
    assert messages(data) == ["/authentication/refresh/request_path: unknown placeholder $oops$"]


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("$call_duration$ *", "syntax error"),
        ("explode($phone$)", "unknown function explode()"),
        ("$phon$ + 'x'", "unknown placeholder $phon$"),
        ("inbound == $call_direction$", "unknown name 'inbound'"),
        ("$note$.upper()", "attribute access not allowed"),
        ("2 ** 10", "the ** operator not allowed"),
        ("upper()", "upper() takes 1 argument(s), got 0"),
    ],
)
def test_bad_expressions_in_variables(expression: str, fragment: str) -> None:
    data = crm(variables={"v": expression})
    problems = [m for m in messages(data) if m.startswith("/variables/v:")]
    assert problems and fragment in problems[0], problems


def test_bad_expressions_in_outputs_filter_and_when() -> None:
    data = crm()
    data["API"]["FindContact"]["outputs"] = {"contact_name": "join(' ', [$first$])"}
    data["API"]["FindContact"]["filter"] = "$contact_id$ =="
    data["API"]["Users"] = [
        {"request_method": "GET", "request_path": "/users", "when": "nope($x$)"},
    ]
    problems = messages(data)
    assert "/API/FindContact/outputs/contact_name: unknown placeholder $first$" in problems
    assert any(m.startswith("/API/FindContact/filter: syntax error") for m in problems)
    assert any(m.startswith("/API/Users/0/when: unknown function nope()") for m in problems)


def test_output_names_must_be_declared() -> None:
    data = crm()
    data["API"]["FindContact"]["outputs"] = {"full": "$contact_name$"}
    assert any("output 'full' is not a declared parameter" in m for m in messages(data))


def test_variable_cycles_are_reported() -> None:
    data = crm(variables={"a": "$b$ + 1", "b": "$c$ + 1", "c": "$a$ + 1", "d": "$a$"})
    problems = [m for m in messages(data) if "cycle" in m]
    assert problems == ["/variables/a: variables refer to each other in a cycle: a → b → c → a"]


def test_variables_order_allows_forward_references() -> None:
    spec = load_spec(crm(variables={"b": "$a$ * 2", "a": "$call_duration$ + 1"}))
    assert spec.variable_order == ("a", "b")


def test_stray_dollar_is_reported() -> None:
    data = crm()
    data["API"]["FindContact"]["request_parameters"] = {"$filter=Phone eq x": "1"}
    assert any("unescaped '$'" in m for m in messages(data))
    data["API"]["FindContact"]["request_parameters"] = {"$$filter": "Phone eq '$phone$'"}
    assert validate_spec(data) == []


def test_steps_are_validated_each() -> None:
    data = crm()
    data["API"]["CreateContact"] = [
        {"request_method": "POST", "request_path": "/companies", "mode": "fallback"},
        {"request_method": "POST", "request_path": "/contacts/$x$", "mode": "merge"},
    ]
    problems = messages(data)
    assert "/API/CreateContact/0/mode: the first step cannot be a fallback" in problems
    assert "/API/CreateContact/1/request_path: unknown placeholder $x$" in problems


def test_unknown_keys_are_reported() -> None:
    data = crm(resource_ur="https://x")
    assert messages(data) == [
        "/resource_ur: unknown key 'resource_ur' (did you mean 'resource_url'?)"
    ]


def test_duplicate_keys_and_bad_json_are_spec_errors() -> None:
    with pytest.raises(SpecError, match="duplicate key 'id'"):
        load_spec('{"id": "a", "id": "b"}')
    with pytest.raises(SpecError, match="not valid JSON"):
        load_spec('{"id": ')


def test_name_collisions() -> None:
    data = crm(variables={"user_id": "1"})
    assert any("both as a parameter and a variable" in m for m in messages(data))


def test_phone_formats_are_checked() -> None:
    data = crm()
    data["API"]["FindContact"]["phone_formats"] = ["e164", "weird"]
    assert any(m.startswith("/API/FindContact/phone_formats/1") for m in messages(data))


def test_property_objects_and_secrets() -> None:
    data = crm(
        properties=[
            "Instance URL",
            "Client ID",
            "Client Secret",
            {"name": "API Key", "type": "secret", "required": True, "help": "from settings"},
            {"name": "Region", "type": "choice", "choices": ["us", {"value": "eu", "label": "EU"}]},
            {"name": "Debug", "type": "boolean", "default": False},
        ]
    )
    spec = load_spec(data)
    api_key = spec.property("API Key")
    assert api_key == PropertyDef(
        name="API Key", type="secret", required=True, help="from settings", secret=True
    )
    assert spec.property("Region").choices == ("us", "eu")
    assert spec.type_of("Debug") == "boolean"
    values = {"Instance URL": "https://x", "Client Secret": "cs", "API Key": "k", "Client ID": "i"}
    # "Client Secret" is a secret by its label and by its use as client_secret.
    assert spec.secret_values(values) == {"cs", "k"}
    del data["properties"][4]["choices"]
    assert any("choices" in m for m in messages(data))


def test_schema_is_published_for_editors() -> None:
    schema = spec_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] and schema["title"] and schema["description"]
    assert SCHEMA_PATH.name == "spec-v1.json"


def test_system_values_have_types() -> None:
    assert SYSTEM_VALUES["call_duration"] == "integer"
    assert SYSTEM_VALUES["call_start"] == "ISO8601Date"
    assert {"phone", "from", "to", "message_ref", "now", "recording_base64"} <= set(SYSTEM_VALUES)


def test_validate_does_not_mutate_and_tolerates_garbage() -> None:
    data = crm()
    before = copy.deepcopy(data)
    validate_spec(data)
    assert data == before
    assert validate_spec([]) == [Problem("", "a spec must be a JSON object")]  # type: ignore[arg-type]
    garbage = {"id": 1, "name": [], "class": "crm", "API": {"FindContact": 5}, "properties": 3}
    assert validate_spec(garbage)  # problems, no exception


def test_engine_imports_no_django() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {ENGINE_MODULES!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ModuleNotFoundError as exc:\n"
        "        if exc.name != name: raise\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('django', 'rest_framework', 'celery'))\n"
        "print(','.join(bad))\n"
    )
    root = pathlib.Path(__file__).resolve().parents[3]
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True
    )
    assert result.stdout.strip() == ""
