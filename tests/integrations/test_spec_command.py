"""`manage.py spec`: validate, readiness, call (against the generic CRM sandbox), webhook."""

from __future__ import annotations

import hashlib
import hmac
import inspect
import io
import json
import pathlib
import subprocess
import sys
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from django.core.management import call_command

from integrations.engine.readiness import readiness_report
from integrations.engine.spec import load_spec
from integrations.engine.webhooks import match_webhook
from integrations.sandbox import pytest_fixtures
from integrations.sandbox.generic_crm import DEFAULT_API_KEY, GenericCrmSandbox
from integrations.sandbox.sms import twilio_signature

ROOT = pathlib.Path(__file__).resolve().parents[2]

crm_server = pytest_fixtures.crm_server

CRM_SPEC: dict[str, Any] = {
    "id": "cli_crm",
    "name": "CLI CRM",
    "class": "crm",
    "properties": [
        {"name": "Instance URL", "type": "url", "required": True},
        {"name": "API Key", "type": "secret", "required": True},
    ],
    "parameters": {"limit": "integer"},
    "resource_url": "$Instance URL$",
    "request_headers": {"X-API-Key": "$API Key$"},
    "API": {
        "FindContact": {
            "request_method": "GET",
            "request_path": "/contacts/search",
            "phone_formats": ["e164", "national", "national_digits", "digits"],
            "request_parameters": {"phone": "$phone$"},
            "response_map": {
                "records": [
                    {"id": "$contact_id$", "name": "$contact_name$", "email": "$contact_email$"}
                ]
            },
        },
        "CreateContact": {
            "request_method": "POST",
            "request_path": "/contacts",
            "request_parameters": {
                "first_name": "$contact_first_name$",
                "last_name": "$contact_last_name$",
                "phone": "$phone$",
            },
            "response_map": {"id": "$contact_id$", "name": "$contact_name$"},
        },
        "Contacts": {
            "request_method": "GET",
            "request_path": "/contacts",
            "request_parameters": {"limit": "$limit$"},
            "response_map": {"records": [{"id": "$contact_id$"}]},
        },
        "CountedSearch": {
            "request_method": "POST",
            "request_path": "/search",
            "request_parameters": {"limit": "$limit$", "query": "$query$"},
        },
    },
}

SMS_SPEC: dict[str, Any] = {
    "id": "cli_sms",
    "name": "CLI SMS",
    "class": "sms",
    "properties": [{"name": "API URL", "type": "url", "required": True}],
    "API": {
        "SendMessage": {
            "request_method": "POST",
            "request_url": "$API URL$/messages",
            "request_parameters": {"from": "$from$", "to": "$to$", "content": "$content$"},
            "response_map": {"data": {"id": "$messageid$"}},
        }
    },
    "Webhook": [
        {
            "event_key": "message",
            "event_type": "message",
            "request_method": "POST",
            "request_parameters": {
                "method": "$event_key$",
                "params": {"from": "$from$", "to": "$to$", "content": "$content$"},
            },
        },
        {
            "event_key": "status",
            "event_type": "status",
            "request_method": "POST",
            "request_parameters": {
                "method": "$event_key$",
                "params": {"id": "$messageid$", "state": "$status$"},
            },
            "status_map": {"1": "delivered", "2": "failed"},
        },
    ],
}


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)


def spec_command(*args: str) -> Run:
    """Run `manage.py spec ARGS` in-process; the exit code is 0 unless it exits."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        call_command("spec", *args, stdout=out, stderr=err)
    except SystemExit as stop:
        code = int(stop.code or 0)
    return Run(code, out.getvalue(), err.getvalue())


def write_spec(directory: pathlib.Path, data: dict[str, Any], name: str = "spec.json") -> str:
    path = directory / name
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return str(path)


@pytest.fixture
def crm_spec(tmp_path: pathlib.Path) -> str:
    return write_spec(tmp_path, CRM_SPEC, "crm.json")


@pytest.fixture
def sms_spec(tmp_path: pathlib.Path) -> str:
    return write_spec(tmp_path, SMS_SPEC, "sms.json")


def crm_props(server: GenericCrmSandbox, api_key: str = DEFAULT_API_KEY) -> list[str]:
    return ["--prop", f"Instance URL={server.url}", "--prop", f"API Key={api_key}"]


# ------------------------------------------------------------------------------ validate


def test_validate_prints_ok_for_each_valid_file(crm_spec: str, sms_spec: str) -> None:
    run = spec_command("validate", crm_spec, sms_spec)
    assert run.code == 0
    assert run.stdout.splitlines() == [f"{crm_spec}: ok", f"{sms_spec}: ok"]
    assert run.stderr == ""


def test_validate_lists_every_problem_with_path_and_pointer(
    tmp_path: pathlib.Path, crm_spec: str
) -> None:
    data = json.loads(json.dumps(CRM_SPEC))
    data["API"]["FindContact"]["request_path"] = "/contacts/$phon$"
    del data["API"]["CreateContact"]["request_path"]
    data["API"]["Contacts"]["response_map"] = {"records": [{"id": "$contact_idd$"}]}
    bad = write_spec(tmp_path, data, "bad.json")

    run = spec_command("validate", crm_spec, bad)

    assert run.code == 1
    assert run.stdout.splitlines() == [f"{crm_spec}: ok"]
    lines = run.stderr.splitlines()
    assert f"{bad}: /API/FindContact/request_path: unknown placeholder $phon$" in lines
    assert f"{bad}: /API/CreateContact: method has no request_path or request_url" in lines
    assert any(
        line.startswith(f"{bad}: /API/Contacts/response_map/records/0/id: ")
        and "$contact_idd$" in line
        for line in lines
    )
    assert len(lines) == 3
    assert all(line.startswith(f"{bad}: /") for line in lines)


def test_validate_reports_a_file_that_is_not_json_as_one_problem_with_its_position(
    tmp_path: pathlib.Path,
) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "id": "x",\n  "name": \n}\n', encoding="utf-8")
    run = spec_command("validate", str(broken))
    assert run.code == 1
    [line] = run.stderr.splitlines()
    assert line.startswith(f"{broken}: ")
    assert "not valid JSON" in line and "line 4 column 1" in line


def test_validate_reports_a_missing_file(tmp_path: pathlib.Path) -> None:
    run = spec_command("validate", str(tmp_path / "absent.json"))
    assert run.code == 1
    assert "absent.json: /: cannot read the file" in run.stderr


def test_validate_exits_1_from_the_command_line(tmp_path: pathlib.Path) -> None:
    data = json.loads(json.dumps(CRM_SPEC))
    data["API"]["FindContact"]["request_path"] = "/contacts/$phon$"
    bad = write_spec(tmp_path, data, "bad.json")
    process = subprocess.run(
        [sys.executable, "manage.py", "spec", "validate", bad],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert process.returncode == 1
    assert f"{bad}: /API/FindContact/request_path: unknown placeholder $phon$" in process.stderr


def test_builtin_specs_validate() -> None:
    """The built-in specs (when there are any) are all valid."""
    specs = [p for p in (ROOT / "integrations/specs").rglob("*.json") if "schema" not in p.parts]
    if not specs:
        pytest.skip("no built-in specs yet")
    run = spec_command("validate", *map(str, specs))
    assert run.code == 0, run.stderr


# ------------------------------------------------------------------------------ readiness


def test_readiness_text_is_a_checklist_with_methods_score_and_next_steps(crm_spec: str) -> None:
    run = spec_command("readiness", crm_spec)
    assert run.code == 0
    text = run.stdout
    score = readiness_report(load_spec(pathlib.Path(crm_spec))).score
    assert f"CLI CRM (cli_crm): {score}/100" in text
    assert "✓ Contact lookup by phone — FindContact" in text
    assert "✓ Contact creation — CreateContact" in text
    assert "✗ Activity creation" in text
    assert "Add next:" in text
    assert "[core] Activity creation: add CreateActivity" in text


def test_readiness_json_is_the_report(crm_spec: str) -> None:
    run = spec_command("readiness", crm_spec, "--json")
    assert run.code == 0
    assert run.json == readiness_report(load_spec(pathlib.Path(crm_spec))).to_dict()


def test_readiness_of_an_sms_spec_is_a_spec_error(sms_spec: str) -> None:
    run = spec_command("readiness", sms_spec)
    assert run.code == 1
    assert "grades crm specs" in run.stderr


# ------------------------------------------------------------------------------ call


def test_find_contact_prints_a_list_even_with_one_record(
    crm_spec: str, crm_server: GenericCrmSandbox
) -> None:
    # Stored as "(415) 555-0123": found by the national format, tried after E.164.
    run = spec_command(
        "call",
        crm_spec,
        "FindContact",
        *crm_props(crm_server),
        "--param",
        "phone=+14155550123",
        "--allow-private",
        "--json",
    )
    assert run.code == 0, run.stderr
    assert run.json == [
        {
            "contact_id": "c-2",
            "contact_name": "John Smith",
            "contact_email": "john.smith@example.com",
        }
    ]
    tried = [r.arg("phone") for r in crm_server.requests_to("/contacts/search")]
    assert tried == ["+14155550123", "(415) 555-0123"]


def test_find_contact_national_phone_is_read_with_the_region(
    crm_spec: str, crm_server: GenericCrmSandbox
) -> None:
    run = spec_command(
        "call",
        crm_spec,
        "FindContact",
        *crm_props(crm_server),
        "--param",
        "phone=415 555 0100",
        "--allow-private",
        "--json",
    )
    assert run.code == 0, run.stderr
    assert [record["contact_id"] for record in run.json] == ["c-1"]


def test_find_contact_without_json_is_readable(
    crm_spec: str, crm_server: GenericCrmSandbox
) -> None:
    run = spec_command(
        "call",
        crm_spec,
        "FindContact",
        *crm_props(crm_server),
        "--param",
        "phone=+14155550123",
        "--allow-private",
    )
    assert run.code == 0, run.stderr
    assert "phone sent as: (415) 555-0123" in run.stdout
    assert "John Smith" in run.stdout
    assert DEFAULT_API_KEY not in run.stdout


def test_no_match_prints_an_empty_list(crm_spec: str, crm_server: GenericCrmSandbox) -> None:
    run = spec_command(
        "call",
        crm_spec,
        "FindContact",
        *crm_props(crm_server),
        "--param",
        "phone=+14155559999",
        "--allow-private",
        "--json",
    )
    assert run.code == 0, run.stderr
    assert run.json == []


def test_create_contact_prints_an_object(crm_spec: str, crm_server: GenericCrmSandbox) -> None:
    run = spec_command(
        "call",
        crm_spec,
        "CreateContact",
        *crm_props(crm_server),
        "--param",
        "contact_first_name=Zoe",
        "--param",
        "contact_last_name=Quinn Adams",
        "--param",
        "phone=+14155550999",
        "--allow-private",
        "--json",
    )
    assert run.code == 0, run.stderr
    result = run.json
    assert isinstance(result, dict)
    assert result["contact_name"] == "Zoe Quinn Adams"
    assert result["contact_id"] in {c["id"] for c in crm_server.state()["contacts"]}


def test_token_option_authenticates_an_oauth2_spec(
    tmp_path: pathlib.Path, crm_server: GenericCrmSandbox
) -> None:
    data = json.loads(json.dumps(CRM_SPEC))
    del data["request_headers"]
    data["properties"] = [{"name": "Instance URL", "type": "url", "required": True}]
    data["authentication"] = {
        "type": "oauth2",
        "authorize_url": "$Instance URL$/oauth/authorize",
        "token_url": "$Instance URL$/oauth/token",
        "client_id": "sandbox-crm-client",
        "client_secret": "sandbox-crm-secret",
    }
    path = write_spec(tmp_path, data, "oauth.json")
    args = ["call", path, "FindContact", "--prop", f"Instance URL={crm_server.url}"]
    args += ["--param", "phone=+14155550100", "--allow-private", "--json"]

    run = spec_command(*args, "--token", DEFAULT_API_KEY)

    assert run.code == 0, run.stderr
    assert [record["contact_id"] for record in run.json] == ["c-1"]
    sent = crm_server.last("/contacts/search")
    assert sent is not None and sent.header("Authorization") == f"Bearer {DEFAULT_API_KEY}"


def test_dry_run_prints_the_request_with_the_secret_redacted(
    crm_spec: str, crm_server: GenericCrmSandbox
) -> None:
    args = ["call", crm_spec, "FindContact", *crm_props(crm_server, "sk-very-secret-1234")]
    args += ["--param", "phone=+14155550123"]

    readable = spec_command(*args, "--dry-run")
    as_json = spec_command(*args, "--dry-run", "--json")

    for run in (readable, as_json):
        assert run.code == 0, run.stderr
        assert "sk-very-secret-1234" not in run.stdout + run.stderr
    assert f"GET {crm_server.url}/contacts/search?phone=%2B14155550123" in readable.stdout
    assert "X-API-Key: [redacted]" in readable.stdout
    [request] = as_json.json
    assert request["method"] == "GET"
    assert request["url"] == f"{crm_server.url}/contacts/search"
    assert request["query"] == [["phone", "+14155550123"]]
    assert request["headers"]["X-API-Key"] == "[redacted]"
    assert crm_server.requests == []


def test_integer_param_given_as_text_renders_as_a_json_number(crm_spec: str) -> None:
    run = spec_command(
        "call",
        crm_spec,
        "CountedSearch",
        "--prop",
        "Instance URL=http://127.0.0.1:9",
        "--prop",
        "API Key=k",
        "--param",
        "limit=5",
        "--param",
        "query=12",
        "--dry-run",
        "--json",
    )
    assert run.code == 0, run.stderr
    [request] = run.json
    assert request["body"] == {"limit": 5, "query": "12"}


def test_integer_param_typed_for_a_live_call(crm_spec: str, crm_server: GenericCrmSandbox) -> None:
    run = spec_command(
        "call",
        crm_spec,
        "Contacts",
        *crm_props(crm_server),
        "--param",
        "limit=2",
        "--allow-private",
        "--json",
    )
    assert run.code == 0, run.stderr
    assert [record["contact_id"] for record in run.json] == ["c-1", "c-2"]


def test_param_that_is_not_its_type_is_a_spec_error(crm_spec: str) -> None:
    run = spec_command(
        "call",
        crm_spec,
        "Contacts",
        "--prop",
        "Instance URL=http://127.0.0.1:9",
        "--prop",
        "API Key=k",
        "--param",
        "limit=many",
        "--dry-run",
    )
    assert run.code == 1
    assert "limit" in run.stderr


def test_http_error_exits_2_with_status_and_message(
    crm_spec: str, crm_server: GenericCrmSandbox
) -> None:
    run = spec_command(
        "call",
        crm_spec,
        "Contacts",
        *crm_props(crm_server),
        "--param",
        "limit=0",
        "--allow-private",
        "--json",
    )
    assert run.code == 2
    assert run.stdout == ""
    assert "HTTP 400" in run.stderr
    assert "limit must be between 1 and" in run.stderr


def test_rejected_credentials_exit_2_without_showing_the_key(
    crm_spec: str, crm_server: GenericCrmSandbox
) -> None:
    run = spec_command(
        "call",
        crm_spec,
        "FindContact",
        *crm_props(crm_server, "wrong-key-5678"),
        "--param",
        "phone=+14155550100",
        "--allow-private",
    )
    assert run.code == 2
    assert "HTTP 401" in run.stderr
    assert "wrong-key-5678" not in run.stderr


def test_loopback_is_refused_without_allow_private(
    crm_spec: str, crm_server: GenericCrmSandbox
) -> None:
    run = spec_command(
        "call", crm_spec, "FindContact", *crm_props(crm_server), "--param", "phone=+14155550100"
    )
    assert run.code == 2
    assert "private network addresses are not allowed" in run.stderr
    assert "--allow-private" in run.stderr
    assert crm_server.requests == []


def test_unknown_method_property_or_parameter_is_a_spec_error(crm_spec: str) -> None:
    props = ["--prop", "Instance URL=http://127.0.0.1:9", "--prop", "API Key=k"]
    unknown_method = spec_command("call", crm_spec, "Nope", *props)
    unknown_prop = spec_command("call", crm_spec, "Contacts", *props, "--prop", "Instance=x")
    unknown_param = spec_command("call", crm_spec, "Contacts", *props, "--param", "limt=2")
    assert unknown_method.code == 1 and "/API/Nope" in unknown_method.stderr
    assert unknown_prop.code == 1 and "'Instance'" in unknown_prop.stderr
    assert unknown_param.code == 1 and "'limt'" in unknown_param.stderr


def test_missing_url_value_is_a_spec_error_with_its_pointer(crm_spec: str) -> None:
    run = spec_command("call", crm_spec, "Contacts", "--prop", "API Key=k", "--dry-run")
    assert run.code == 1
    assert "/resource_url: no value for $Instance URL$" in run.stderr


def test_call_of_an_invalid_spec_lists_its_problems(tmp_path: pathlib.Path) -> None:
    data = json.loads(json.dumps(CRM_SPEC))
    data["API"]["FindContact"]["request_path"] = "/contacts/$phon$"
    bad = write_spec(tmp_path, data, "bad.json")
    run = spec_command("call", bad, "FindContact", "--dry-run")
    assert run.code == 1
    assert f"{bad}: /API/FindContact/request_path: unknown placeholder $phon$" in run.stderr


# ------------------------------------------------------------------------------ webhook


def webhook(spec: str, tmp_path: pathlib.Path, body: Any, *extra: str) -> Run:
    body_file = tmp_path / "body.json"
    body_file.write_text(body if isinstance(body, str) else json.dumps(body), encoding="utf-8")
    return spec_command(
        "webhook",
        spec,
        "--method",
        "POST",
        "--content-type",
        "application/json",
        "--body-file",
        str(body_file),
        *extra,
    )


def test_webhook_message_is_matched_and_printed(sms_spec: str, tmp_path: pathlib.Path) -> None:
    body = {
        "method": "message",
        "params": {"from": "+14155550100", "to": "(415) 555-0123", "content": "Hi there"},
    }
    run = webhook(sms_spec, tmp_path, body)
    assert run.code == 0, run.stderr
    lines = run.stdout.splitlines()
    assert "event_type: message" in lines
    assert "from: +14155550100" in lines
    assert "to: +14155550123" in lines
    assert "content: Hi there" in lines


def test_webhook_status_json_carries_the_mapped_status(
    sms_spec: str, tmp_path: pathlib.Path
) -> None:
    run = webhook(
        sms_spec, tmp_path, {"method": "status", "params": {"id": "m-1", "state": "1"}}, "--json"
    )
    assert run.code == 0, run.stderr
    event = run.json
    assert event["event_type"] == "status"
    assert event["event_key"] == "status"
    assert event["model_index"] == 1
    assert event["values"]["messageid"] == "m-1"
    assert event["values"]["status"] == "delivered"
    assert event["values"]["provider_status"] == "1"


def test_webhook_missing_required_value_exits_1_naming_it(
    sms_spec: str, tmp_path: pathlib.Path
) -> None:
    run = webhook(sms_spec, tmp_path, {"method": "message", "params": {"from": "+14155550100"}})
    assert run.code == 1
    assert "rejected (400)" in run.stderr and "$to$" in run.stderr


def test_webhook_unparseable_body_exits_1(sms_spec: str, tmp_path: pathlib.Path) -> None:
    run = webhook(sms_spec, tmp_path, '{"method":')
    assert run.code == 1
    assert "not valid JSON" in run.stderr


def test_webhook_no_matching_model_exits_1(sms_spec: str, tmp_path: pathlib.Path) -> None:
    run = webhook(sms_spec, tmp_path, {"method": "typing", "params": {}})
    assert run.code == 1
    assert "no Webhook model matches" in run.stderr


def test_webhook_get_reads_the_query(tmp_path: pathlib.Path) -> None:
    data = json.loads(json.dumps(SMS_SPEC))
    data["Webhook"] = [
        {
            "event_key": "inbound",
            "request_method": "GET",
            "request_parameters": {"From": "$from$", "To": "$to$", "Body": "$content$"},
            "request_headers": {"X-Message-Id": "$messageid$"},
        }
    ]
    path = write_spec(tmp_path, data, "get.json")
    run = spec_command(
        "webhook",
        path,
        "--method",
        "GET",
        "--query",
        "From=+14155550100",
        "--query",
        "To=4155550123",
        "--query",
        "Body=a=b c",
        "--header",
        "X-Message-Id=m-9",
        "--json",
    )
    assert run.code == 0, run.stderr
    assert run.json["values"] == {
        "from": "+14155550100",
        "to": "+14155550123",
        "content": "a=b c",
        "messageid": "m-9",
        "event_key": "inbound",
    }


needs_signatures = pytest.mark.skipif(
    "properties" not in inspect.signature(match_webhook).parameters,
    reason="this engine does not verify webhook signatures",
)


def signed_spec(tmp_path: pathlib.Path, signature: dict[str, Any]) -> str:
    data = json.loads(json.dumps(SMS_SPEC))
    data["properties"].append({"name": "Signing Secret", "type": "secret", "required": True})
    data["Webhook"] = {"signature": signature, "models": SMS_SPEC["Webhook"]}
    return write_spec(tmp_path, data, "signed.json")


@needs_signatures
def test_webhook_signature_is_checked_with_the_secret_property(tmp_path: pathlib.Path) -> None:
    path = signed_spec(
        tmp_path,
        {"type": "hmac-sha256", "header": "X-Signature", "secret": "$Signing Secret$"},
    )
    body = {"method": "status", "params": {"id": "m-1", "state": "2"}}
    raw = json.dumps(body).encode()
    good = hmac.new(b"s3cret", raw, hashlib.sha256).hexdigest()
    secret = ["--prop", "Signing Secret=s3cret"]

    signed = webhook(path, tmp_path, body, *secret, "--header", f"X-Signature={good}")
    forged = webhook(path, tmp_path, body, *secret, "--header", f"X-Signature={'0' * 64}")
    unsigned = webhook(path, tmp_path, body, *secret)

    assert signed.code == 0, signed.stderr
    assert "status: failed" in signed.stdout.splitlines()
    assert forged.code == 1 and "rejected (401)" in forged.stderr
    assert unsigned.code == 1 and "X-Signature" in unsigned.stderr
    assert "s3cret" not in forged.stderr + unsigned.stderr


@needs_signatures
def test_webhook_twilio_style_signature_covers_the_url(tmp_path: pathlib.Path) -> None:
    data = json.loads(json.dumps(SMS_SPEC))
    data["properties"].append({"name": "Auth Token", "type": "secret", "required": True})
    data["Webhook"] = {
        "signature": {
            "type": "hmac-sha1",
            "header": "X-Twilio-Signature",
            "secret": "$Auth Token$",
            "payload": "url+sorted-params",
        },
        "models": [
            {
                "event_key": "inbound",
                "request_method": "POST",
                "request_parameters": {"From": "$from$", "To": "$to$", "Body": "$content$"},
            }
        ],
    }
    path = write_spec(tmp_path, data, "twilio.json")
    fields = {"From": "+14155550100", "To": "+14155550123", "Body": "hello"}
    url = "https://portal.example/services/twilio/a1"
    signature = twilio_signature(url, fields, "tw-token")
    body_file = tmp_path / "form.txt"
    body_file.write_text(urlencode(fields), encoding="utf-8")
    args = ["webhook", path, "--content-type", "application/x-www-form-urlencoded"]
    args += ["--body-file", str(body_file), "--prop", "Auth Token=tw-token"]
    args += ["--header", f"X-Twilio-Signature={signature}"]

    right_url = spec_command(*args, "--url", url)
    wrong_url = spec_command(*args, "--url", url + "x")

    assert right_url.code == 0, right_url.stderr
    assert "content: hello" in right_url.stdout.splitlines()
    assert wrong_url.code == 1 and "rejected (401)" in wrong_url.stderr
