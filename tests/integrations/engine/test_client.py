"""SpecClient, the executor: steps, phone formats, result shapes, dry runs, lazy recordings,
Install/Uninstall, property defaults and tokens for methods that name them.

Small specs written here run against `local_server` (tests/integrations/engine/conftest.py), a
loopback server whose answers each test sets.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import pytest

from integrations.engine import client as client_module
from integrations.engine.auth import InMemoryTokenStore, TokenSet
from integrations.engine.client import CallResult, SpecClient, request_summary
from integrations.engine.errors import IntegrationError, SpecError
from integrations.engine.spec import load_spec
from tests.integrations.engine.conftest import LocalServer, Received, Reply

RECORDS_PATH = "/search"


def spec_with(api: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A crm spec with `api` (FindContact is added if missing) and `resource_url` a property."""
    document: dict[str, Any] = {
        "id": "unit",
        "name": "Unit",
        "class": "crm",
        "properties": [{"name": "Base URL", "type": "url", "required": True}],
        "resource_url": "$Base URL$",
        "API": {
            "FindContact": {
                "request_method": "GET",
                "request_path": "/contacts",
                "request_parameters": {"phone": "$phone$"},
                "response_map": {"records": [{"id": "$contact_id$", "name": "$contact_name$"}]},
            },
            **api,
        },
    }
    document.update(extra)
    return document


def client_for(server: LocalServer, document: dict[str, Any], **kwargs: Any) -> SpecClient:
    properties = {"Base URL": server.url("").rstrip("/"), **kwargs.pop("properties", {})}
    return SpecClient(
        load_spec(document), properties=properties, allow_private_networks=True, **kwargs
    )


def records(*ids: str) -> Reply:
    return Reply(200, {"records": [{"id": i, "name": f"Contact {i}"} for i in ids]})


CONTACT_MAP = {"records": [{"id": "$contact_id$", "name": "$contact_name$"}]}


# -- steps -------------------------------------------------------------------------------


def test_a_then_step_sees_what_the_step_before_captured(local_server: LocalServer) -> None:
    local_server.route("POST", "/accounts", Reply(201, {"id": "a-9"}))
    local_server.route("POST", "/contacts", Reply(201, {"id": "c-9"}))
    document = spec_with(
        {
            "CreateContact": [
                {
                    "request_method": "POST",
                    "request_path": "/accounts",
                    "request_parameters": {"name": "$contact_company$"},
                    "response_map": {"id": "$account_id$"},
                },
                {
                    "request_method": "POST",
                    "request_path": "/contacts",
                    "request_parameters": {"name": "$contact_name$", "account": "$account_id$"},
                    "response_map": {"id": "$contact_id$"},
                },
            ]
        }
    )

    result = client_for(local_server, document).call(
        "CreateContact", {"contact_company": "Acme", "contact_name": "Jane"}
    )

    assert local_server.requests_to("/contacts")[0].json() == {"name": "Jane", "account": "a-9"}
    assert result.to_json() == {"account_id": "a-9", "contact_id": "c-9"}


def _fallback_spec() -> dict[str, Any]:
    return spec_with(
        {
            "SearchContacts": [
                {"request_method": "GET", "request_path": "/contacts", "response_map": CONTACT_MAP},
                {
                    "mode": "fallback",
                    "request_method": "GET",
                    "request_path": "/leads",
                    "response_map": CONTACT_MAP,
                },
            ]
        }
    )


def test_a_fallback_step_is_skipped_when_earlier_steps_found_records(
    local_server: LocalServer,
) -> None:
    local_server.route("GET", "/contacts", records("c-1"))
    local_server.route("GET", "/leads", records("l-1"))

    result = client_for(local_server, _fallback_spec()).call("SearchContacts", {"query": "x"})

    assert [r["contact_id"] for r in result.records] == ["c-1"]
    assert local_server.requests_to("/leads") == []


def test_a_fallback_step_runs_when_earlier_steps_found_nothing(local_server: LocalServer) -> None:
    local_server.route("GET", "/contacts", records())
    local_server.route("GET", "/leads", records("l-1"))

    result = client_for(local_server, _fallback_spec()).call("SearchContacts", {"query": "x"})

    assert [r["contact_id"] for r in result.records] == ["l-1"]


def test_a_failing_step_condition_is_reported_at_the_steps_pointer(
    local_server: LocalServer,
) -> None:
    local_server.route("POST", "/accounts", Reply(201, {"id": "a-9"}))
    document = spec_with(
        {
            "CreateContact": [
                {
                    "request_method": "POST",
                    "request_path": "/accounts",
                    "response_map": {"id": "$account_id$"},
                },
                {
                    "when": "$count$ / 0 > 1",
                    "request_method": "POST",
                    "request_path": "/contacts",
                },
            ]
        },
        parameters={"count": "integer"},
    )

    with pytest.raises(SpecError) as caught:
        client_for(local_server, document).call("CreateContact", {"count": 3})

    assert caught.value.problems[0].pointer == "/API/CreateContact/1/when"
    assert local_server.requests_to("/contacts") == []


def test_a_merge_step_adds_its_records_once_each(local_server: LocalServer) -> None:
    local_server.route("GET", "/contacts", records("c-1", "c-2"))
    local_server.route("GET", "/leads", records("c-2", "l-1", "l-1"))
    document = spec_with(
        {
            "FindContact": [
                {"request_method": "GET", "request_path": "/contacts", "response_map": CONTACT_MAP},
                {
                    "mode": "merge",
                    "request_method": "GET",
                    "request_path": "/leads",
                    "response_map": CONTACT_MAP,
                },
            ]
        }
    )

    result = client_for(local_server, document).call("FindContact", {"phone": "+14155550100"})

    assert [r["contact_id"] for r in result.records] == ["c-1", "c-2", "l-1"]


@pytest.mark.parametrize(("flag", "runs"), [(None, False), ("no", False), ("yes", True)])
def test_a_step_runs_only_when_its_condition_holds(
    local_server: LocalServer, flag: str | None, runs: bool
) -> None:
    local_server.route("POST", "/activities", Reply(201, {"id": "act-1"}))
    local_server.route("POST", "/notes", Reply(201, {}))
    document = spec_with(
        {
            "CreateActivity": [
                {
                    "request_method": "POST",
                    "request_path": "/activities",
                    "request_parameters": {"subject": "call"},
                    "response_map": {"id": "$activity_id$"},
                },
                {
                    "when": "$note_wanted$ == 'yes'",
                    "request_method": "POST",
                    "request_path": "/notes",
                    "request_parameters": {"activity": "$activity_id$"},
                },
            ]
        },
        parameters={"note_wanted": "string"},
    )

    result = client_for(local_server, document).call("CreateActivity", {"note_wanted": flag})

    assert len(local_server.requests_to("/notes")) == (1 if runs else 0)
    assert len(result.requests) == (2 if runs else 1)
    assert result.first()["activity_id"] == "act-1"


# -- phone formats -----------------------------------------------------------------------


def _only_national_matches(request: Received) -> Reply:
    if request.query.get("phone") == ["(415) 555-0123"]:
        return records("c-2")
    return records()


def _formats_spec(formats: list[str]) -> dict[str, Any]:
    return spec_with(
        {
            "FindContact": {
                "request_method": "GET",
                "request_path": RECORDS_PATH,
                "request_parameters": {"phone": "$phone$"},
                "phone_formats": formats,
                "response_map": CONTACT_MAP,
            }
        }
    )


def test_phone_formats_are_tried_in_order_and_stop_at_the_first_match(
    local_server: LocalServer,
) -> None:
    local_server.route("GET", RECORDS_PATH, _only_national_matches)
    document = _formats_spec(["e164", "digits", "national", "national_digits", "last7"])

    result = client_for(local_server, document).call("FindContact", {"phone": "+14155550123"})

    tried = [r.query["phone"][0] for r in local_server.requests_to(RECORDS_PATH)]
    assert tried == ["+14155550123", "14155550123", "(415) 555-0123"]
    assert result.phone_used == "(415) 555-0123"
    assert [r["contact_id"] for r in result.records] == ["c-2"]


def test_phone_formats_without_a_match_try_each_distinct_format_once(
    local_server: LocalServer,
) -> None:
    local_server.route("GET", RECORDS_PATH, records())
    document = _formats_spec(["e164", "national_digits", "last10", "digits"])

    result = client_for(local_server, document).call("FindContact", {"phone": "+14155550999"})

    tried = [r.query["phone"][0] for r in local_server.requests_to(RECORDS_PATH)]
    assert tried == ["+14155550999", "4155550999", "14155550999"]  # last10 = national_digits
    assert result.records == []
    assert result.to_json() == []


def test_national_formats_follow_the_orgs_region(local_server: LocalServer) -> None:
    local_server.route("GET", RECORDS_PATH, records())
    document = _formats_spec(["national"])

    client_for(local_server, document, region="GB").call("FindContact", {"phone": "+442079460958"})

    assert local_server.requests_to(RECORDS_PATH)[0].query["phone"] == ["020 7946 0958"]


# -- result shapes -----------------------------------------------------------------------


def test_a_list_method_prints_a_list_even_with_one_record(local_server: LocalServer) -> None:
    local_server.route("GET", "/users", Reply(200, {"users": [{"id": "u-1"}]}))
    local_server.route("GET", "/contacts", Reply(200, {"records": []}))
    document = spec_with(
        {
            "Users": {
                "request_method": "GET",
                "request_path": "/users",
                "response_map": {"users": [{"id": "$user_id$"}]},
            }
        }
    )
    client = client_for(local_server, document)

    assert client.call("Users").to_json() == [{"user_id": "u-1"}]
    assert client.call("FindContact", {"phone": "+14155550100"}).to_json() == []


def test_a_create_method_prints_an_object(local_server: LocalServer) -> None:
    local_server.route("POST", "/contacts", Reply(201, {"data": {"id": "c-7"}}))
    document = spec_with(
        {
            "CreateContact": {
                "request_method": "POST",
                "request_path": "/contacts",
                "request_parameters": {"name": "$contact_name$"},
                "response_map": {"data": {"id": "$contact_id$"}},
            }
        }
    )

    result = client_for(local_server, document).call("CreateContact", {"contact_name": "Jo"})

    assert result.to_json() == {"contact_id": "c-7"}
    assert result.records == [{"contact_id": "c-7"}]


def test_a_create_answered_with_a_list_uses_its_first_record(local_server: LocalServer) -> None:
    local_server.route("POST", "/contacts", Reply(201, {"records": [{"id": "c-8"}]}))
    document = spec_with(
        {
            "CreateContact": {
                "request_method": "POST",
                "request_path": "/contacts",
                "response_map": {"records": [{"id": "$contact_id$"}]},
            }
        }
    )

    result = client_for(local_server, document).call("CreateContact")

    assert result.is_list
    assert result.to_json() == [{"contact_id": "c-8"}]
    assert result.first() == {"contact_id": "c-8"}


def test_an_empty_success_maps_nothing(local_server: LocalServer) -> None:
    local_server.route("DELETE", "/contacts/c-1", Reply(204))
    document = spec_with(
        {
            "DeleteContact": {
                "request_method": "DELETE",
                "request_path": "/contacts/$contact_id$",
                "response_map": {"id": "$contact_id$"},
            }
        }
    )

    result = client_for(local_server, document).call("DeleteContact", {"contact_id": "c-1"})

    assert result == CallResult(method_name="DeleteContact", requests=result.requests)
    assert result.to_json() == {}


# -- dry runs ----------------------------------------------------------------------------


def test_dry_run_sends_nothing_and_redacts_secrets(local_server: LocalServer) -> None:
    secret = "s3cr3t/key+value"
    document = spec_with(
        {
            "CreateActivity": [
                {
                    "request_method": "POST",
                    "request_path": "/activities",
                    "request_headers": {"X-Api-Key": "$API Key$"},
                    "request_parameters": {"subject": "call", "signature": "key=$API Key$"},
                    "response_map": {"id": "$activity_id$"},
                },
                {
                    "request_method": "PUT",
                    "request_path": "/activities/$activity_id$/done",
                },
            ]
        },
        properties=[
            {"name": "Base URL", "type": "url", "required": True},
            {"name": "API Key", "type": "secret", "required": True},
        ],
    )
    client = client_for(local_server, document, properties={"API Key": secret})

    requests = client.dry_run("CreateActivity")

    assert local_server.received == []
    assert len(requests) == 1  # the second step needs the id the first would capture
    assert requests[0].headers["X-Api-Key"] == secret  # what would be sent
    summary = request_summary(requests[0])
    assert secret not in str(summary)
    assert summary["headers"]["X-Api-Key"] == "[redacted]"
    assert summary["body"] == {"subject": "call", "signature": "key=[redacted]"}


def test_dry_run_renders_the_first_phone_format(local_server: LocalServer) -> None:
    document = _formats_spec(["national", "e164"])

    (request,) = client_for(local_server, document).dry_run(
        "FindContact", {"phone": "+14155550123"}
    )

    assert request.query == [("phone", "(415) 555-0123")]
    assert local_server.received == []


# -- recording_base64 --------------------------------------------------------------------


def _recording_spec() -> dict[str, Any]:
    return spec_with(
        {
            "UploadRecording": {
                "request_method": "POST",
                "request_path": "/upload",
                "request_parameters": {"audio": "$recording_base64$", "call": "$call_id$"},
            },
            "UpdateActivity": {
                "request_method": "PUT",
                "request_path": "/activities/$activity_id$",
                "request_parameters": {"recording": "$recording_url$"},
            },
        }
    )


def test_recording_base64_is_fetched_for_the_method_that_sends_it(
    local_server: LocalServer,
) -> None:
    audio = b"ID3" + bytes(range(200))
    local_server.route("GET", "/rec.mp3", Reply(200, audio, {"Content-Type": "audio/mpeg"}))
    local_server.route("POST", "/upload", Reply(200, {}))
    client = client_for(local_server, _recording_spec())

    client.call("UploadRecording", {"recording_url": local_server.url("/rec.mp3"), "call_id": "c1"})

    assert len(local_server.requests_to("/rec.mp3")) == 1
    sent = local_server.requests_to("/upload")[0].json()
    assert base64.b64decode(sent["audio"]) == audio
    assert sent["call"] == "c1"


def test_recording_base64_reads_a_local_file(local_server: LocalServer, tmp_path: Path) -> None:
    recording = tmp_path / "call.wav"
    recording.write_bytes(b"RIFF....WAVE")
    local_server.route("POST", "/upload", Reply(200, {}))

    client_for(local_server, _recording_spec()).call(
        "UploadRecording", {"recording_file": str(recording)}
    )

    sent = local_server.requests_to("/upload")[0].json()
    assert base64.b64decode(sent["audio"]) == b"RIFF....WAVE"


def test_recording_base64_is_fetched_for_a_variable_built_from_another_variable(
    local_server: LocalServer,
) -> None:
    audio = b"ID3" + bytes(range(50))
    local_server.route("GET", "/rec.mp3", Reply(200, audio))
    local_server.route("POST", "/upload", Reply(200, {}))
    document = spec_with(
        {
            "UploadRecording": {
                "request_method": "POST",
                "request_path": "/upload",
                "request_parameters": {"audio": "$payload$"},
            }
        },
        variables={
            "rec": "$recording_base64$",
            "payload": "join('', ['data:audio/mpeg;base64,', $rec$])",
        },
    )

    client_for(local_server, document).call(
        "UploadRecording", {"recording_url": local_server.url("/rec.mp3")}
    )

    sent = local_server.requests_to("/upload")[0].json()
    assert sent == {"audio": "data:audio/mpeg;base64," + base64.b64encode(audio).decode()}


def test_a_recording_url_too_large_to_inline_says_to_use_a_multipart_upload(
    local_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "RECORDING_BASE64_MAX_BYTES", 10)
    local_server.route("GET", "/rec.mp3", Reply(200, b"x" * 11))
    local_server.route("GET", "/stream.mp3", Reply(200, b"x" * 11, send_length=False))
    local_server.route("POST", "/upload", Reply(200, {}))
    client = client_for(local_server, _recording_spec())

    for path in ("/rec.mp3", "/stream.mp3"):
        with pytest.raises(IntegrationError) as caught:
            client.call("UploadRecording", {"recording_url": local_server.url(path)})
        assert caught.value.message == (
            "The recording is larger than 10 bytes and cannot be sent inline; "
            "use a multipart upload in the spec."
        )
        assert caught.value.permanent
    assert local_server.requests_to("/upload") == []


def test_recording_is_not_fetched_for_methods_that_do_not_send_it(
    local_server: LocalServer,
) -> None:
    local_server.route("GET", "/rec.mp3", Reply(200, b"audio"))
    local_server.route("PUT", "/activities/a-1", Reply(200, {}))
    client = client_for(local_server, _recording_spec())

    client.call(
        "UpdateActivity", {"activity_id": "a-1", "recording_url": local_server.url("/rec.mp3")}
    )

    assert local_server.requests_to("/rec.mp3") == []
    assert local_server.requests_to("/activities/a-1")[0].json() == {
        "recording": local_server.url("/rec.mp3")
    }


def test_recording_is_never_fetched_by_a_spec_that_does_not_use_it(
    local_server: LocalServer,
) -> None:
    local_server.route("GET", "/rec.mp3", Reply(200, b"audio"))
    local_server.route("GET", "/contacts", records())

    client_for(local_server, spec_with({})).call(
        "FindContact", {"phone": "+14155550100", "recording_url": local_server.url("/rec.mp3")}
    )

    assert local_server.requests_to("/rec.mp3") == []


# -- Install and Uninstall ---------------------------------------------------------------


def _lifecycle_spec() -> dict[str, Any]:
    return spec_with(
        {},
        parameters={"hook_id": "string"},
        Install=[
            {
                "request_method": "POST",
                "request_path": "/integrate",
                "response_map": {"account": "$account_id$"},
            },
            {
                "request_method": "POST",
                "request_path": "/hooks",
                "request_parameters": {"account": "$account_id$", "url": "$webhook_url$"},
                "response_map": {"id": "$hook_id$"},
            },
        ],
        Uninstall=[{"request_method": "DELETE", "request_path": "/hooks/$hook_id$"}],
    )


def test_install_runs_its_requests_in_order_and_returns_their_captures(
    local_server: LocalServer,
) -> None:
    local_server.route("POST", "/integrate", Reply(200, {"account": "acc-1"}))
    local_server.route("POST", "/hooks", Reply(201, {"id": "hook-1"}))
    client = client_for(
        local_server, _lifecycle_spec(), system_values={"webhook_url": "https://portal/hook"}
    )

    result = client.install()

    assert [r.path for r in local_server.received] == ["/integrate", "/hooks"]
    assert local_server.requests_to("/hooks")[0].json() == {
        "account": "acc-1",
        "url": "https://portal/hook",
    }
    assert result.values == {"account_id": "acc-1", "hook_id": "hook-1"}


def test_uninstall_uses_the_installation_values(local_server: LocalServer) -> None:
    local_server.route("DELETE", "/hooks/hook-1", Reply(204))
    client = client_for(local_server, _lifecycle_spec(), installation_values={"hook_id": "hook-1"})

    client.uninstall()

    assert [(r.method, r.path) for r in local_server.received] == [("DELETE", "/hooks/hook-1")]


def test_a_spec_without_install_requests_sends_nothing(local_server: LocalServer) -> None:
    result = client_for(local_server, spec_with({})).install()

    assert result.requests == [] and result.values == {}
    assert local_server.received == []


def test_an_install_mistake_points_into_install(local_server: LocalServer) -> None:
    client = client_for(local_server, _lifecycle_spec())

    with pytest.raises(SpecError) as caught:
        client.uninstall()  # no hook_id: the URL cannot be built

    assert caught.value.problems[0].pointer.startswith("/Uninstall/0")
    assert local_server.received == []


# -- property defaults and tokens --------------------------------------------------------


def test_a_property_left_out_takes_its_default(local_server: LocalServer) -> None:
    document = spec_with(
        {},
        properties=[
            {"name": "Base URL", "type": "url", "required": True, "default": "https://api.example"}
        ],
    )

    defaulted = SpecClient(load_spec(document))
    given = SpecClient(load_spec(document), properties={"Base URL": "https://eu.api.example"})

    assert defaulted.dry_run("FindContact", {"phone": "+1"})[0].url.startswith(
        "https://api.example/contacts"
    )
    assert given.dry_run("FindContact", {"phone": "+1"})[0].url.startswith(
        "https://eu.api.example/contacts"
    )


def _oauth_spec() -> dict[str, Any]:
    return spec_with(
        {
            "Logout": {
                "request_method": "POST",
                "request_path": "/revoke",
                "request_content_type": "application/x-www-form-urlencoded",
                "request_parameters": {"token": "$refresh_token$"},
            },
            "Users": {
                "request_method": "GET",
                "request_path": "/users",
                "request_parameters": {"token": "$refresh_token$", "q": "x"},
            },
        },
        authentication={
            "type": "oauth2",
            "authorize_url": "$Base URL$/authorize",
            "token_url": "$Base URL$/token",
            "client_id": "id",
            "client_secret": "secret",
        },
    )


def test_a_method_that_names_the_refresh_token_gets_it_redacted(
    local_server: LocalServer,
) -> None:
    local_server.route("POST", "/revoke", Reply(200, {}))
    store = InMemoryTokenStore(TokenSet("access-1", "refresh-1", time.time() + 3600))
    client = client_for(local_server, _oauth_spec(), token_store=store)

    result = client.call("Logout")

    assert local_server.requests_to("/revoke")[0].form() == {"token": ["refresh-1"]}
    assert local_server.requests_to("/revoke")[0].headers["Authorization"] == "Bearer access-1"
    assert "refresh-1" not in str(request_summary(result.requests[0]))


def test_without_stored_tokens_the_token_key_is_left_out(local_server: LocalServer) -> None:
    client = client_for(local_server, _oauth_spec(), token_store=InMemoryTokenStore())

    (request,) = client.dry_run("Users")

    assert request.query == [("q", "x")]
