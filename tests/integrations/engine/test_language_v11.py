"""Spec language v1.1 end to end (DESIGN 4.8, 4.9): each feature against a sandbox that needs it.

The example specs are under `tests/fixtures/v11/`; the servers are the sandbox imitations of a
HubSpot-style filter-group search, an OData service, a SOQL endpoint, a REST CRM with
find-or-create accounts and `Location` headers, and SMS providers that sign their webhooks
(Twilio's form HMAC, Telnyx's Ed25519).
"""

from __future__ import annotations

import base64
import json
import pathlib
import re
import sqlite3
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from integrations.engine import client as client_module
from integrations.engine.auth import InMemoryTokenStore, TokenSet
from integrations.engine.client import SpecClient
from integrations.engine.errors import IntegrationError
from integrations.engine.expressions import evaluate, quote_literal
from integrations.engine.request import build_request
from integrations.engine.signatures import SignatureInvalid
from integrations.engine.spec import Spec, load_spec, validate_spec
from integrations.engine.webhooks import match_webhook
from integrations.sandbox import pytest_fixtures
from integrations.sandbox.generic_crm import (
    DEFAULT_API_KEY,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    ODATA_FIELDS,
    SOQL_OBJECTS,
    GenericCrmSandbox,
)
from integrations.sandbox.queries import odata_parse_filter, soql_parse
from integrations.sandbox.recorder import RecorderSandbox
from integrations.sandbox.sms import SmsProviderSandbox, twilio_inbound_params

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "v11"

crm_server = pytest_fixtures.crm_server
sms_server = pytest_fixtures.sms_server


def fixture_spec(name: str) -> Spec:
    return load_spec(FIXTURES / f"{name}.json")


def crm_client(spec: Spec, server: GenericCrmSandbox, **properties: Any) -> SpecClient:
    values = {"Base URL": server.url, "API Key": DEFAULT_API_KEY, **properties}
    return SpecClient(spec, properties=values, allow_private_networks=True)


@pytest.fixture
def receiver() -> Iterator[RecorderSandbox]:
    """A stand-in for the portal's webhook endpoint: records what the provider posts."""
    server = pytest_fixtures.running_sandbox(RecorderSandbox)
    server.reset()
    yield server  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# Nested filter groups and dropping empty blocks (HubSpot-style POST /search)


def test_search_drops_an_optional_filter_whose_value_is_unset(
    crm_server: GenericCrmSandbox,
) -> None:
    result = crm_client(fixture_spec("search"), crm_server).call(
        "FindContact", {"phone": "+14155550100"}
    )
    assert [r["contact_id"] for r in result.records] == ["c-1"]
    filters = crm_server.last("/search").json["filterGroups"][0]["filters"]
    assert filters == [{"propertyName": "phone", "operator": "EQ", "value": "+14155550100"}]


def test_search_keeps_the_optional_filter_when_set(crm_server: GenericCrmSandbox) -> None:
    client = crm_client(fixture_spec("search"), crm_server)
    matching = client.call("FindContact", {"phone": "+14155550177", "contact_company": "Twins LLC"})
    assert {r["contact_id"] for r in matching.records} == {"c-6", "c-7"}
    other = client.call("FindContact", {"phone": "+14155550177", "contact_company": "Globex"})
    assert other.records == []
    assert len(crm_server.last("/search").json["filterGroups"][0]["filters"]) == 2


def test_search_outputs_compute_a_name_on_each_record(crm_server: GenericCrmSandbox) -> None:
    result = crm_client(fixture_spec("search"), crm_server).call(
        "FindContact", {"phone": "+14155550177"}
    )
    assert sorted(r["contact_name"] for r in result.records) == ["Sally Twin", "Sam Twin"]
    assert result.values["total"] == 2  # a capture outside the records, typed integer


def test_filter_keeps_only_matching_records(crm_server: GenericCrmSandbox) -> None:
    result = crm_client(fixture_spec("search"), crm_server).call(
        "SearchContacts", {"query": "example.com"}
    )
    # john.smith@ and ken@ have no company; the filter drops them.
    ids = {r["contact_id"] for r in result.records}
    assert ids == {"c-8"}
    assert result.is_list


def test_a_block_of_literals_is_never_dropped() -> None:
    spec = fixture_spec("search")
    request = build_request(
        spec,
        spec.methods["FindContact"],
        {"Base URL": "https://crm.example", "API Key": "k"},
    )
    # Every placeholder unset: the filter group goes, the literal blocks stay.
    assert request.json_body == {
        "properties": ["firstname", "lastname", "company"],
        "limit": 10,
    }


# --------------------------------------------------------------------------------------------
# OData and SOQL quoting, `$$` escapes, unset variables


def test_odata_quote_finds_a_name_with_an_apostrophe(crm_server: GenericCrmSandbox) -> None:
    result = crm_client(fixture_spec("odata"), crm_server).call(
        "SearchContacts", {"query": "O'Brien"}
    )
    assert [(r["contact_id"], r["contact_name"]) for r in result.records] == [
        ("c-8", "Pat O'Brien")
    ]
    sent = crm_server.last("/odata/Contacts").query
    assert sent["$filter"] == ["LastName eq 'O''Brien'"]  # `$$filter` is a literal `$filter`
    assert sent["$select"] == ["Id,FullName,Company"]


def test_odata_unset_variable_drops_its_key(crm_server: GenericCrmSandbox) -> None:
    crm_client(fixture_spec("odata"), crm_server).call("SearchContacts", {})
    assert "$filter" not in crm_server.last("/odata/Contacts").query


def test_odata_find_by_phone_with_a_number_option(crm_server: GenericCrmSandbox) -> None:
    result = crm_client(fixture_spec("odata"), crm_server).call(
        "FindContact", {"phone": "+14155550100"}
    )
    assert result.to_json() == [{"contact_id": "c-1", "contact_name": "Jane Doe"}]
    assert crm_server.last("/odata/Contacts").query["$top"] == ["5"]


def test_soql_quote_finds_a_name_with_an_apostrophe(crm_server: GenericCrmSandbox) -> None:
    result = crm_client(fixture_spec("soql"), crm_server).call(
        "SearchContacts", {"query": "O'Brien"}
    )
    assert [r["contact_id"] for r in result.records] == ["c-8"]
    assert result.values["total"] == 1
    sent = crm_server.last("/query").query["q"][0]
    assert "LastName = 'O\\'Brien'" in sent


def test_soql_quote_survives_backslashes_and_quotes(crm_server: GenericCrmSandbox) -> None:
    # Unquoted, this would be a malformed query (400); quoted, it is a search that finds nobody.
    result = crm_client(fixture_spec("soql"), crm_server).call(
        "SearchContacts", {"query": "x\\' OR Name != '"}
    )
    assert result.records == []


def test_brace_escapes_under_brace_placeholders() -> None:
    spec = load_spec(
        {
            "id": "braces",
            "name": "Braces",
            "class": "crm",
            "var_char": "{}",
            "properties": ["Base URL"],
            "resource_url": "{Base URL}",
            "API": {
                "FindContact": {
                    "request_method": "POST",
                    "request_path": "/graphql",
                    "request_parameters": {
                        "query": 'query {{ contact(phone: "{phone}") {{ id }} }}',
                        "cost": "US$5",
                    },
                }
            },
        }
    )
    request = build_request(
        spec,
        spec.methods["FindContact"],
        {"Base URL": "https://crm.example", "phone": "+15551230000"},
    )
    assert request.json_body == {
        "query": 'query { contact(phone: "+15551230000") { id } }',
        "cost": "US$5",
    }


# --------------------------------------------------------------------------------------------
# Steps: find-or-create an account, then the contact; Location header → id


def test_steps_find_an_existing_account_then_create_the_contact(
    crm_server: GenericCrmSandbox,
) -> None:
    result = crm_client(fixture_spec("steps"), crm_server, Tenant="t-1").call(
        "CreateContact",
        {
            "contact_first_name": "Wile",
            "contact_last_name": "Coyote",
            "phone": "+14155550999",
            "contact_company": "Acme Corp",
        },
    )
    contact_id = result.first()["contact_id"]
    assert crm_server.contacts[contact_id]["account_id"] == "a-1"
    assert crm_server.requests_to("/accounts", method="POST") == []
    assert result.values["contact_location"] == f"/contacts/{contact_id}"


def test_steps_create_the_missing_account_as_a_fallback(crm_server: GenericCrmSandbox) -> None:
    result = crm_client(fixture_spec("steps"), crm_server, Tenant="t-1").call(
        "CreateContact",
        {"contact_last_name": "Runner", "phone": "+14155550998", "contact_company": "Newco"},
    )
    account_id = result.values["account_id"]
    assert crm_server.accounts[account_id]["name"] == "Newco"
    assert crm_server.contacts[result.first()["contact_id"]]["account_id"] == account_id


def test_steps_skip_account_steps_when_their_condition_is_false(
    crm_server: GenericCrmSandbox,
) -> None:
    result = crm_client(fixture_spec("steps"), crm_server, Tenant="t-1").call(
        "CreateContact", {"contact_last_name": "Solo", "phone": "+14155550997"}
    )
    assert [r.url.rsplit("/", 1)[-1] for r in result.requests] == ["contacts"]
    assert "account_id" not in crm_server.last("/contacts", method="POST").json
    assert result.first()["contact_id"].startswith("c-")


def _steps_with_a_single_object_find() -> Spec:
    """The steps fixture whose account search keeps only the first match (`"[0]"`, v1.1)."""
    data = json.loads((FIXTURES / "steps.json").read_text())
    data["API"]["CreateContact"][0]["response_map"] = {"records": {"[0]": {"id": "$account_id$"}}}
    return load_spec(data)


def test_a_fallback_is_skipped_when_a_single_object_find_found_the_record(
    crm_server: GenericCrmSandbox,
) -> None:
    result = crm_client(_steps_with_a_single_object_find(), crm_server, Tenant="t-1").call(
        "CreateContact",
        {"contact_last_name": "Coyote", "phone": "+14155550996", "contact_company": "Acme Corp"},
    )
    assert crm_server.requests_to("/accounts", method="POST") == []
    assert crm_server.contacts[result.first()["contact_id"]]["account_id"] == "a-1"


def test_a_fallback_runs_when_a_single_object_find_found_nothing(
    crm_server: GenericCrmSandbox,
) -> None:
    result = crm_client(_steps_with_a_single_object_find(), crm_server, Tenant="t-1").call(
        "CreateContact",
        {"contact_last_name": "Runner", "phone": "+14155550995", "contact_company": "Newco"},
    )
    assert crm_server.accounts[result.values["account_id"]]["name"] == "Newco"


@pytest.mark.parametrize(
    "company",
    ["Acme Corp", "Newco", None],
    ids=["company-exists", "company-created", "no-company"],
)
def test_a_stepped_create_prints_one_object(
    crm_server: GenericCrmSandbox, company: str | None
) -> None:
    """`spec call --json CreateContact` prints the created contact, whatever path ran."""
    params = {"contact_last_name": "Shape", "phone": "+14155550994", "contact_company": company}
    result = crm_client(fixture_spec("steps"), crm_server, Tenant="t-1").call(
        "CreateContact", params
    )
    printed = result.to_json()
    assert isinstance(printed, dict)
    assert crm_server.contacts[printed["contact_id"]]["last_name"] == "Shape"
    assert ("account_id" in printed) == (company is not None)


def test_step_using_a_value_only_a_later_step_captures_is_a_validation_problem() -> None:
    data = json.loads((FIXTURES / "steps.json").read_text())
    data["parameters"]["company_id"] = "string"
    steps = data["API"]["CreateContact"]
    steps[0]["request_parameters"]["owner"] = "$company_id$"
    steps[1]["response_map"] = {"id": "$company_id$"}
    problems = [str(p) for p in validate_spec(data)]
    assert (
        "/API/CreateContact/0: step 0 uses $company_id$, which only step 1 captures (later): "
        "reorder the steps"
    ) in problems


# --------------------------------------------------------------------------------------------
# phone_formats, typed parameters, query rendering, spec-wide headers


def test_phone_formats_try_each_format_until_one_matches(crm_server: GenericCrmSandbox) -> None:
    result = crm_client(fixture_spec("steps"), crm_server, Tenant="t").call(
        "FindContact", {"phone": "+14155550123"}
    )
    assert result.records[0]["contact_id"] == "c-2"
    assert result.phone_used == "(415) 555-0123"


def test_query_rendering_booleans_lists_nulls_and_typed_text(
    crm_server: GenericCrmSandbox,
) -> None:
    crm_client(fixture_spec("steps"), crm_server, Tenant="t").call(
        "Contacts",
        # Text as a command line gives it: "5" is read as the integer the spec declares.
        {"limit": "5", "include_archived": True, "tags": ["vip", "new"]},
    )
    query = crm_server.last("/contacts", method="GET").query
    assert query == {"limit": ["5"], "archived": ["true"], "tag": ["vip", "new"]}


def test_text_that_is_not_the_declared_type_is_a_spec_error(crm_server: GenericCrmSandbox) -> None:
    from integrations.engine.errors import SpecError

    with pytest.raises(SpecError, match="value of limit"):
        crm_client(fixture_spec("steps"), crm_server, Tenant="t").call(
            "Contacts", {"limit": "five"}
        )


def test_spec_wide_headers_are_sent_and_a_methods_own_win(crm_server: GenericCrmSandbox) -> None:
    crm_server.configure(required_headers={"X-Tenant": "t-42"})
    client = crm_client(fixture_spec("steps"), crm_server, Tenant="t-42")
    client.call("FindContact", {"phone": "+14155550100"})
    client.call("Contacts", {})
    find = crm_server.last("/contacts/search")
    listing = crm_server.last("/contacts", method="GET")
    assert find.header("X-Tenant") == listing.header("X-Tenant") == "t-42"
    assert find.header("Accept") == "application/json"
    assert listing.header("Accept") == "text/plain"


# --------------------------------------------------------------------------------------------
# recording_base64 and multipart parts


def test_recording_base64_is_sent_inline(
    crm_server: GenericCrmSandbox, tmp_path: pathlib.Path
) -> None:
    recording = tmp_path / "call.wav"
    recording.write_bytes(b"RIFF....WAVEfmt " + bytes(range(64)))
    result = crm_client(fixture_spec("steps"), crm_server, Tenant="t").call(
        "CreateActivity",
        {
            "subject": "Call",
            "call_id": "call-1",
            "call_duration": 3725,
            "recording_file": str(recording),
        },
    )
    activity = crm_server.activities[result.first()["activity_id"]]
    assert base64.b64decode(activity["recording"]) == recording.read_bytes()
    assert activity["call_length"] == "01:02:05"


def test_recording_base64_is_not_fetched_for_methods_that_do_not_use_it(
    crm_server: GenericCrmSandbox, tmp_path: pathlib.Path
) -> None:
    missing = tmp_path / "never-read.wav"
    result = crm_client(fixture_spec("steps"), crm_server, Tenant="t").call(
        "FindContact", {"phone": "+14155550100", "recording_file": str(missing)}
    )
    assert result.records


def test_recording_base64_size_is_capped(
    crm_server: GenericCrmSandbox, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "RECORDING_BASE64_MAX_BYTES", 10)
    recording = tmp_path / "big.wav"
    recording.write_bytes(b"x" * 11)
    with pytest.raises(IntegrationError, match="cannot be sent inline"):
        crm_client(fixture_spec("steps"), crm_server, Tenant="t").call(
            "CreateActivity", {"subject": "s", "call_id": "c", "recording_file": str(recording)}
        )
    assert crm_server.requests_to("/activities", method="POST") == []


def test_multipart_parts_with_their_own_content_type_and_filename(
    crm_server: GenericCrmSandbox, tmp_path: pathlib.Path
) -> None:
    client = crm_client(fixture_spec("steps"), crm_server, Tenant="t")
    activity_id = client.call("CreateActivity", {"subject": "Call", "call_id": "c1"}).first()[
        "activity_id"
    ]
    recording = tmp_path / "r.wav"
    recording.write_bytes(b"RIFF" + b"\x01" * 1000)
    result = client.call(
        "UploadRecording",
        {
            "activity_id": activity_id,
            "call_id": "c1",
            "call_duration": 42,
            "recording_file": str(recording),
        },
    )
    stored = crm_server.activities[activity_id]["recordings"][0]
    assert result.first()["recording_id"] == stored["id"]
    assert (stored["filename"], stored["content_type"], stored["size"]) == (
        "call-c1.wav",
        "audio/wav",
        1004,
    )
    parts = {p["name"]: p for p in stored["parts"]}
    assert set(parts) == {"file", "metadata"}  # the unset $note$ part is left out
    assert parts["metadata"]["content_type"] == "application/json"
    assert json.loads(stored["fields"]["metadata"]) == {"call_id": "c1", "duration": 42}


# --------------------------------------------------------------------------------------------
# Captured context: token_response_map and installation values


def test_token_response_map_value_is_the_base_url(crm_server: GenericCrmSandbox) -> None:
    crm_server.configure(auto_approve=True)
    # Log in through "localhost"; the API host is only known from the token response.
    login = crm_server.url.replace("127.0.0.1", "localhost")
    client = SpecClient(
        fixture_spec("oauth_instance"),
        properties={
            "Login URL": login,
            "Client ID": DEFAULT_CLIENT_ID,
            "Client Secret": DEFAULT_CLIENT_SECRET,
        },
        allow_private_networks=True,
    )
    redirect_uri = "http://127.0.0.1:9/oauth/callback"
    consent = requests.get(
        client.authorization_url(state="s1", redirect_uri=redirect_uri),
        allow_redirects=False,
        timeout=5,
    )
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(consent.headers["Location"]).query)
    tokens = client.exchange_code(code=code["code"][0], redirect_uri=redirect_uri)
    assert tokens.extra == {"instance_url": crm_server.url}
    result = client.call("FindContact", {"phone": "+14155550100"})
    assert result.records[0]["contact_id"] == "c-1"
    assert result.requests[0].url.startswith(crm_server.url + "/contacts/search")


def test_installation_values_are_used_like_properties(crm_server: GenericCrmSandbox) -> None:
    issued = crm_server.issue_tokens()
    store = InMemoryTokenStore(TokenSet(access_token=issued["access_token"]))
    client = SpecClient(
        fixture_spec("oauth_instance"),
        properties={"Client ID": DEFAULT_CLIENT_ID, "Client Secret": DEFAULT_CLIENT_SECRET},
        installation_values={"instance_url": crm_server.url},
        token_store=store,
        allow_private_networks=True,
    )
    result = client.call("FindContact", {"phone": "+14155550100"})
    assert result.records[0]["contact_name"] == "Jane Doe"


# --------------------------------------------------------------------------------------------
# Indexing in response maps


def test_index_keys_pick_one_element_of_a_response_array(crm_server: GenericCrmSandbox) -> None:
    spec = load_spec(
        {
            "id": "index",
            "name": "Index",
            "class": "crm",
            "properties": ["Base URL", {"name": "API Key", "type": "secret"}],
            "resource_url": "$Base URL$",
            "authentication": {"type": "bearer", "token": "$API Key$"},
            "API": {
                "FindContact": {
                    "request_method": "GET",
                    "request_path": "/contacts/search",
                    "request_parameters": {"q": "$query$"},
                    "response_map": {
                        "records": {"[-1]": {"id": "$contact_id$", "name": "$contact_name$"}}
                    },
                }
            },
        }
    )
    result = crm_client(spec, crm_server).call("FindContact", {"query": "twin"})
    assert result.first() == {"contact_id": "c-7", "contact_name": "Sally Twin"}


# --------------------------------------------------------------------------------------------
# Signed webhooks


def test_twilio_style_signed_form_with_numbered_media_is_an_mms(
    sms_server: SmsProviderSandbox, receiver: RecorderSandbox
) -> None:
    spec = fixture_spec("twilio_sms")
    url = receiver.url + "/services/v11-twilio-sms/a1001"
    media = [sms_server.media_url("sample.jpg"), sms_server.media_url("sample.pdf")]
    params = twilio_inbound_params(
        "+15551230000", "+15551239999", "two files", media, ["image/jpeg", "application/pdf"]
    )
    assert sms_server.post_signed_form(url, params, "tw-token").status_code == 200
    posted = receiver.last("/services/v11-twilio-sms/a1001")
    match = match_webhook(
        spec,
        method=posted.method,
        content_type=posted.header("Content-Type") or "",
        body=posted.body,
        query={},
        headers=posted.headers,
        url=url,
        properties={"Auth Token": "tw-token"},
    )
    assert match is not None
    assert match.event_type == "mms"
    assert match.values["urls"] == media
    assert match.values["url"] == media[0]
    assert match.values["media_types"] == ["image/jpeg", "application/pdf"]
    assert (match.values["from"], match.values["to"]) == ("+15551230000", "+15551239999")
    assert match.values["messageid"] == params["MessageSid"]


def test_twilio_style_plain_sms_is_a_message(
    sms_server: SmsProviderSandbox, receiver: RecorderSandbox
) -> None:
    url = receiver.url + "/hook"
    sms_server.post_signed_form(
        url, twilio_inbound_params("+15551230000", "+15551239999", "hi"), "tw-token"
    )
    posted = receiver.last("/hook")
    match = match_webhook(
        fixture_spec("twilio_sms"),
        method="POST",
        content_type=posted.header("Content-Type") or "",
        body=posted.body,
        query={},
        headers=posted.headers,
        url=url,
        properties={"Auth Token": "tw-token"},
    )
    assert match is not None
    assert match.event_type == "message"
    assert match.values["urls"] == []
    assert match.values["content"] == "hi"


def test_twilio_style_form_signed_with_another_token_is_refused(
    sms_server: SmsProviderSandbox, receiver: RecorderSandbox
) -> None:
    url = receiver.url + "/hook"
    sms_server.post_signed_form(
        url, twilio_inbound_params("+15551230000", "+15551239999", "hi"), "someone-else"
    )
    posted = receiver.last("/hook")
    with pytest.raises(SignatureInvalid) as caught:
        match_webhook(
            fixture_spec("twilio_sms"),
            method="POST",
            content_type=posted.header("Content-Type") or "",
            body=posted.body,
            query={},
            headers=posted.headers,
            url=url,
            properties={"Auth Token": "tw-token"},
        )
    assert caught.value.status == 401


def telnyx_payload(media: list[str]) -> dict[str, Any]:
    return {
        "data": {
            "event_type": "message.received",
            "id": "evt-1",
            "payload": {
                "id": "msg-77",
                "from": {"phone_number": "+15551230000"},
                "to": [{"phone_number": "+15551239999", "status": "webhook_delivered"}],
                "text": "see attached",
                "media": [{"url": url, "content_type": "image/jpeg"} for url in media],
            },
        }
    }


def test_ed25519_signed_json_webhook(
    sms_server: SmsProviderSandbox, receiver: RecorderSandbox
) -> None:
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    media = [sms_server.media_url()]
    sms_server.post_ed25519_json(
        receiver.url + "/telnyx",
        telnyx_payload(media),
        key,
        separator="|",
        encoding="base64",
        signature_header="telnyx-signature-ed25519",
        timestamp_header="telnyx-timestamp",
    )
    posted = receiver.last("/telnyx")
    properties = {"Public Key": base64.b64encode(public).decode()}
    kwargs: dict[str, Any] = {
        "method": "POST",
        "content_type": "application/json",
        "query": {},
        "headers": posted.headers,
        "properties": properties,
    }
    match = match_webhook(fixture_spec("ed25519_sms"), body=posted.body, **kwargs)
    assert match is not None
    assert match.event_type == "mms"
    assert match.values["to"] == "+15551239999"  # "[0]" in the model picks the first recipient
    assert match.values["url"] == media[0]
    assert match.values["messageid"] == "msg-77"
    tampered = posted.body.replace(b"see attached", b"see nothing!")
    with pytest.raises(SignatureInvalid, match="does not match"):
        match_webhook(fixture_spec("ed25519_sms"), body=tampered, **kwargs)


# --------------------------------------------------------------------------------------------
# Functions (4.3 and 4.9), `map` pairs, // and %


@pytest.mark.parametrize(
    ("expression", "values", "expected"),
    [
        ("replace($note$, '\\n', ' ')", {"note": "a\nb"}, "a b"),
        ("quote($q$, 'soql')", {"q": "O'Brien"}, "O\\'Brien"),
        ("quote($q$, 'odata')", {"q": "O'Brien"}, "O''Brien"),
        ("quote($q$, 'sql')", {"q": "it's"}, "it''s"),
        ("urlencode($q$)", {"q": "a b/c&d"}, "a%20b%2Fc%26d"),
        ("base64($q$)", {"q": "user:pass"}, "dXNlcjpwYXNz"),
        ("pad($n$, 6)", {"n": 42}, "000042"),
        ("duration($s$, '%M:%S')", {"s": 3725}, "62:05"),
        ("duration($s$)", {"s": 3725}, "01:02:05"),
        ("str($n$) + 's'", {"n": 5}, "5s"),
        ("int($t$) + 1", {"t": "41"}, 42),
        ("first($l$)", {"l": ["a", "b"]}, "a"),
        ("last(split($p$, '/'))", {"p": "/contacts/c-9"}, "c-9"),
        ("len($l$)", {"l": ["a", "b"]}, 2),
        ("len($missing$)", {}, 0),
        ("map($c$, '1', 'delivered', '2', 'failed', 'unknown')", {"c": 2}, "failed"),
        ("map($c$, '1', 'delivered', '2', 'failed', 'unknown')", {"c": 9}, "unknown"),
        ("$s$ // 60", {"s": 125}, 2),
        ("$s$ % 60", {"s": 125}, 5),
        ("'mms' if len($urls$) > 0 else 'message'", {"urls": []}, "message"),
    ],
)
def test_functions(expression: str, values: dict[str, Any], expected: Any) -> None:
    assert evaluate(expression, values) == expected


# --------------------------------------------------------------------------------------------
# Quoting round-trips (property tests against the sandbox's own parsers)

_TEXT = st.text(max_size=40)


@settings(max_examples=200, deadline=None)
@given(_TEXT)
def test_soql_quote_round_trips(value: str) -> None:
    query = soql_parse(
        f"SELECT Id FROM Contact WHERE Name = '{quote_literal(value, 'soql')}'", SOQL_OBJECTS
    )
    assert query.where is not None
    assert query.where({"Name": value})
    assert not query.where({"Name": value + "x"})


@settings(max_examples=200, deadline=None)
@given(_TEXT)
def test_odata_quote_round_trips(value: str) -> None:
    predicate = odata_parse_filter(f"FullName eq '{quote_literal(value, 'odata')}'", ODATA_FIELDS)
    assert predicate({"FullName": value})
    assert not predicate({"FullName": value + "x"})


@settings(max_examples=200, deadline=None)
@given(
    st.text(
        alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
        max_size=40,
    )
)
def test_sql_quote_round_trips(value: str) -> None:
    with sqlite3.connect(":memory:") as connection:
        (result,) = connection.execute(f"SELECT '{quote_literal(value, 'sql')}'").fetchone()
    assert result == value


# --------------------------------------------------------------------------------------------
# The reference's examples stay valid

DOC = pathlib.Path(__file__).resolve().parents[3] / "docs" / "spec-language.md"
_SPEC_BLOCK = re.compile(r"<!-- spec -->\s*```json\n(.*?)```", re.S)


def doc_specs() -> list[str]:
    return _SPEC_BLOCK.findall(DOC.read_text(encoding="utf-8")) if DOC.exists() else []


def test_the_reference_has_full_spec_examples() -> None:
    assert len(doc_specs()) >= 5


@pytest.mark.parametrize("text", doc_specs())
def test_reference_spec_examples_are_valid(text: str) -> None:
    load_spec(text)


def test_the_reference_lists_every_system_value_and_function() -> None:
    from integrations.engine.expressions import FUNCTIONS
    from integrations.engine.spec import SYSTEM_VALUES

    text = DOC.read_text(encoding="utf-8")
    missing = [name for name in SYSTEM_VALUES if f"`{name}`" not in text]
    missing += [f"{name}()" for name in FUNCTIONS if f"`{name}(" not in text]
    assert missing == []
