"""`secret` parameters: a token an Install request (or the OAuth token response) captures is
sent where the spec says and redacted wherever a person could read it — the recorded attempts
(the delivery log), error messages, dry runs and `spec call --dry-run` — like a secret property.
"""

from __future__ import annotations

import copy
import io
import json
import pathlib
import re
from typing import Any

import pytest
from django.core.management import call_command

from integrations.engine.auth import InMemoryTokenStore, TokenSet
from integrations.engine.client import SpecClient, request_summary
from integrations.engine.errors import IntegrationError, SpecError
from integrations.engine.http import AttemptRecord
from integrations.engine.spec import load_spec, validate_spec
from tests.integrations.engine.conftest import LocalServer, Received, Reply

# Not a well-known secret key name ("token", "api_key"…): only the marker can hide it.
SESSION_KEY = "sk-live-7Qx/9+Zp=w"
CAPTURE_KEY = "sessionHandle"

SPEC: dict[str, Any] = {
    "id": "secret-install",
    "name": "Secret install",
    "class": "crm",
    "properties": [{"name": "Base URL", "type": "url", "required": True}],
    "parameters": {"session_key": "secret", "account_ref": "string"},
    "resource_url": "$Base URL$",
    "Install": [
        {
            "request_method": "POST",
            "request_path": "/install",
            "request_parameters": {"name": "Patchbay"},
            "response_map": {"account": "$account_ref$", "auth": {CAPTURE_KEY: "$session_key$"}},
        },
        {
            "request_method": "POST",
            "request_path": "/hooks",
            "request_headers": {"X-Session": "$session_key$"},
            "request_parameters": {"session": "$session_key$", "account": "$account_ref$"},
        },
    ],
    "API": {
        "FindContact": {
            "request_method": "GET",
            "request_path": "/contacts",
            "request_headers": {"X-Session": "$session_key$"},
            "request_parameters": {"phone": "$phone$", "session": "$session_key$"},
            "response_map": {"data": [{"id": "$contact_id$", "name": "$contact_name$"}]},
        }
    },
}


def _serve(server: LocalServer) -> None:
    server.route(
        "POST",
        "/install",
        Reply(201, {"account": "acc-9", "auth": {CAPTURE_KEY: SESSION_KEY}}),
    )
    server.route("POST", "/hooks", Reply(204))

    def contacts(request: Received) -> Reply:
        if request.query.get("session") != [SESSION_KEY]:
            return Reply(401, {"error": "bad session"})
        return Reply(200, {"data": [{"id": "c-1", "name": "Jane Doe"}]})

    server.route("GET", "/contacts", contacts)


def _client(server: LocalServer, attempts: list[AttemptRecord], **values: Any) -> SpecClient:
    return SpecClient(
        load_spec(SPEC),
        properties={"Base URL": server.url()},
        installation_values=values,
        allow_private_networks=True,
        on_attempt=attempts.append,
    )


def _logged(record: AttemptRecord) -> str:
    return json.dumps(
        [
            record.url_redacted,
            record.request_body_redacted,
            record.response_body_excerpt,
            record.error,
        ]
    )


def test_the_marker_is_a_parameter_type() -> None:
    spec = load_spec(SPEC)

    assert spec.secret_parameter_names == {"session_key"}
    assert spec.type_of("session_key") == "string"
    assert spec.secret_values({"session_key": SESSION_KEY, "account_ref": "acc-9"}) == {SESSION_KEY}


def test_an_install_captured_secret_is_sent_and_never_logged(local_server: LocalServer) -> None:
    _serve(local_server)
    attempts: list[AttemptRecord] = []

    installed = _client(local_server, attempts).install()
    values = installed.values
    result = _client(local_server, attempts, **values).call(
        "FindContact", {"phone": "+15551234567"}
    )

    assert values == {"account_ref": "acc-9", "session_key": SESSION_KEY}
    assert result.to_json() == [{"contact_id": "c-1", "contact_name": "Jane Doe"}]
    # Sent where the spec says: the later Install request and the API call.
    (hook,) = local_server.requests_to("/hooks")
    assert hook.headers["X-Session"] == SESSION_KEY and hook.json()["session"] == SESSION_KEY
    (find,) = local_server.requests_to("/contacts")
    assert find.query["session"] == [SESSION_KEY]
    assert find.headers["X-Session"] == SESSION_KEY
    # Never in what is recorded, in any encoding.
    assert [r.method_name for r in attempts] == ["Install", "Install", "FindContact"]
    for record in attempts:
        logged = _logged(record)
        for form in (SESSION_KEY, "sk-live-7Qx%2F9%2BZp%3Dw", "7Qx"):
            assert form not in logged
    install_response = json.loads(attempts[0].response_body_excerpt or "")
    assert install_response == {"account": "acc-9", "auth": {CAPTURE_KEY: "[redacted]"}}
    assert json.loads(attempts[1].request_body_redacted or "")["session"] == "[redacted]"
    assert "session=[redacted]" in attempts[2].url_redacted
    assert "phone=%2B15551234567" in attempts[2].url_redacted


def test_an_error_message_hides_the_secret(local_server: LocalServer) -> None:
    def echo(request: Received) -> Reply:
        return Reply(400, {"detail": f"session {request.query['session'][0]} is not allowed"})

    local_server.route("GET", "/contacts", echo)
    attempts: list[AttemptRecord] = []
    client = _client(local_server, attempts, session_key=SESSION_KEY)

    with pytest.raises(IntegrationError) as caught:
        client.call("FindContact", {"phone": "+15551234567"})

    shown = f"{caught.value} {caught.value.url} {caught.value.response_body}"
    assert "400" in str(caught.value)
    assert SESSION_KEY not in shown and "7Qx" not in shown
    assert "[redacted]" in str(caught.value.url)
    assert all("7Qx" not in _logged(record) for record in attempts)


def test_a_bad_url_built_from_the_secret_is_reported_redacted() -> None:
    document = copy.deepcopy(SPEC)
    document["API"]["FindContact"]["request_path"] = "/contacts"
    document["resource_url"] = "$session_key$/api"
    client = SpecClient(load_spec(document), installation_values={"session_key": SESSION_KEY})

    with pytest.raises(SpecError) as caught:
        client.call("FindContact", {"phone": "+15551234567"})

    assert "not an absolute http(s) URL" in str(caught.value)
    assert "7Qx" not in str(caught.value)


def test_a_dry_run_shows_the_secret_redacted(local_server: LocalServer) -> None:
    client = _client(local_server, [], session_key=SESSION_KEY)

    (request,) = client.dry_run("FindContact", {"phone": "+15551234567"})
    summary = request_summary(request)

    assert request.query == [("phone", "+15551234567"), ("session", SESSION_KEY)]
    assert summary["query"] == [["phone", "+15551234567"], ["session", "[redacted]"]]
    assert summary["headers"]["X-Session"] == "[redacted]"
    assert "7Qx" not in json.dumps(summary)
    assert local_server.received == []


def test_spec_call_dry_run_prints_the_secret_redacted(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "secret-install.json"
    path.write_text(json.dumps(SPEC))
    out = io.StringIO()

    call_command(
        "spec",
        "call",
        str(path),
        "FindContact",
        "--prop",
        "Base URL=https://crm.example",
        "--param",
        f"session_key={SESSION_KEY}",
        "--param",
        "phone=+15551234567",
        "--dry-run",
        stdout=out,
    )

    printed = out.getvalue()
    assert "GET https://crm.example/contacts?phone=%2B15551234567&session=" in printed
    assert "X-Session: [redacted]" in printed
    assert "7Qx" not in printed


def test_spec_call_prints_a_secret_the_call_captured_redacted(
    local_server: LocalServer, tmp_path: pathlib.Path
) -> None:
    spec = copy.deepcopy(SPEC)
    spec["API"]["CreateContact"] = {
        "request_method": "POST",
        "request_path": "/contacts",
        "request_parameters": {"phone": "$phone$"},
        "response_map": {"id": "$contact_id$", CAPTURE_KEY: "$session_key$"},
    }
    path = tmp_path / "secret-create.json"
    path.write_text(json.dumps(spec))
    local_server.route("POST", "/contacts", Reply(201, {"id": "c-2", CAPTURE_KEY: SESSION_KEY}))
    out = io.StringIO()

    call_command(
        "spec",
        "call",
        str(path),
        "CreateContact",
        "--prop",
        f"Base URL={local_server.url('')}",
        "--param",
        "phone=+15551234567",
        "--allow-private",
        "--json",
        stdout=out,
    )

    printed = json.loads(out.getvalue())
    assert printed["contact_id"] == "c-2"
    assert printed["session_key"] == "[redacted]"
    assert "7Qx" not in out.getvalue()


OAUTH_SPEC: dict[str, Any] = {
    "id": "secret-oauth",
    "name": "Secret OAuth",
    "class": "crm",
    "properties": [
        {"name": "Base URL", "type": "url", "required": True},
        {"name": "Client ID", "required": True},
        {"name": "Client Secret", "type": "secret", "required": True},
    ],
    "parameters": {"signing_key": "secret"},
    "resource_url": "$Base URL$",
    "authentication": {
        "type": "oauth2",
        "authorize_url": "$Base URL$/authorize",
        "token_url": "$Base URL$/token",
        "client_id": "$Client ID$",
        "client_secret": "$Client Secret$",
        "token_response_map": {"signingKey": "$signing_key$"},
    },
    "API": {
        "FindContact": {
            "request_method": "GET",
            "request_path": "/contacts",
            "request_parameters": {"phone": "$phone$", "sig": "$signing_key$"},
            "response_map": {"data": [{"id": "$contact_id$"}]},
        }
    },
}


def test_a_token_response_secret_is_sent_and_never_logged(local_server: LocalServer) -> None:
    key = "whk-Signing-Key-31"
    local_server.route(
        "POST",
        "/token",
        Reply(200, {"access_token": "at-1", "expires_in": 3600, "signingKey": key}),
    )
    local_server.route("GET", "/contacts", Reply(200, {"data": [{"id": "c-1"}]}))
    attempts: list[AttemptRecord] = []
    store = InMemoryTokenStore(None)
    client = SpecClient(
        load_spec(OAUTH_SPEC),
        properties={"Base URL": local_server.url(), "Client ID": "cid", "Client Secret": "cs"},
        token_store=store,
        allow_private_networks=True,
        on_attempt=attempts.append,
    )

    tokens: TokenSet = client.exchange_code(code="abc", redirect_uri="https://portal/cb")
    client.call("FindContact", {"phone": "+15551234567"})

    assert tokens.extra == {"signing_key": key}
    (find,) = local_server.requests_to("/contacts")
    assert find.query["sig"] == [key]
    assert len(attempts) == 2
    assert all("Signing-Key" not in _logged(record) for record in attempts)
    assert json.loads(attempts[0].response_body_excerpt or "")["signingKey"] == "[redacted]"
    assert "sig=[redacted]" in attempts[1].url_redacted


# --------------------------------------------------------------------------------------------
# Validation


def _problems(document: dict[str, Any]) -> list[str]:
    return [str(problem) for problem in validate_spec(document)]


def test_a_secret_parameter_nothing_captures_is_rejected() -> None:
    document = copy.deepcopy(SPEC)
    document["parameters"]["api_secret"] = "secret"

    problems = _problems(document)

    assert len(problems) == 1
    assert problems[0].startswith("/parameters/api_secret: secret parameter $api_secret$ is ")
    assert "never captured" in problems[0] and '"type": "secret"' in problems[0]


def test_a_system_value_cannot_be_typed_secret() -> None:
    document = copy.deepcopy(SPEC)
    document["parameters"]["phone"] = "secret"

    assert _problems(document) == [
        "/parameters/phone: $phone$ is a system value and cannot be typed secret; "
        "capture the secret into a parameter of your own"
    ]


def test_a_secret_parameter_cannot_go_into_a_page_link() -> None:
    document = copy.deepcopy(SPEC)
    document["contact_url"] = "$Base URL$/contacts/$contact_id$?s=$session_key$"

    assert _problems(document) == [
        "/contact_url: contact_url is a link shown to people and cannot contain the secret "
        "parameter $session_key$"
    ]


def test_an_unknown_parameter_type_names_the_choices() -> None:
    document = copy.deepcopy(SPEC)
    document["parameters"]["session_key"] = "secrets"

    (problem,) = _problems(document)

    assert problem.startswith("/parameters/session_key: 'secrets' is not one of ")
    assert "'secret'" in problem


def test_a_secret_captured_by_the_token_request_is_accepted() -> None:
    assert _problems(OAUTH_SPEC) == []
    assert _problems(SPEC) == []


# --------------------------------------------------------------------------------------------
# The reference's example (docs/spec-language.md, section 13.1) does what the text says

DOC = pathlib.Path(__file__).resolve().parents[3] / "docs" / "spec-language.md"


def test_the_reference_example_logs_what_the_text_says(local_server: LocalServer) -> None:
    blocks = re.findall(r"<!-- spec -->\s*```json\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    (text,) = [b for b in blocks if '"install-token-example"' in b]
    spec = load_spec(text)
    local_server.route(
        "POST",
        "/integrations",
        Reply(201, {"account": "acc-9", "credentials": {"key": "tok-4f2a"}}),
    )
    local_server.route("GET", "/contacts", Reply(200, {"data": []}))
    attempts: list[AttemptRecord] = []
    properties = {"Base URL": local_server.url(), "Admin Key": "adm-1"}

    def client(**values: Any) -> SpecClient:
        return SpecClient(
            spec,
            properties=properties,
            installation_values=values,
            allow_private_networks=True,
            on_attempt=attempts.append,
        )

    values = client().install().values
    client(**values).call("FindContact", {"phone": "+15551234567"})

    assert values == {"account_ref": "acc-9", "api_token": "tok-4f2a"}
    (find,) = local_server.requests_to("/contacts")
    assert find.query == {"phone": ["+15551234567"], "token": ["tok-4f2a"]}
    assert find.headers["X-Api-Token"] == "tok-4f2a"
    assert json.loads(attempts[0].response_body_excerpt or "") == {
        "account": "acc-9",
        "credentials": {"key": "[redacted]"},
    }
    assert attempts[1].url_redacted.endswith("/contacts?phone=%2B15551234567&token=[redacted]")
