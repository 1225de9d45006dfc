"""build_request: URLs, headers, query, bodies, multipart, redaction, phone variants."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from integrations.engine.errors import SpecError
from integrations.engine.request import (
    MultipartPart,
    build_request,
    flatten_pairs,
    phone_variants,
    prepare_context,
    should_run,
)
from integrations.engine.spec import Spec, load_spec
from tests.integrations.engine.seed_examples import (
    SMS_API_BLOCK,
    crm_seed_spec_text,
    fragment,
    sms_seed_spec_text,
)

PROPERTIES = {
    "Instance URL": "https://crm.example.com",
    "Client ID": "cid",
    "Client Secret": "s3cr/et=",
}


def crm_spec(**changes: Any) -> Spec:
    data = json.loads(crm_seed_spec_text())
    api = changes.pop("API", {})
    data.update(changes)
    data["API"].update(api)
    return load_spec(data)


def test_seed_send_message_renders_a_json_body() -> None:
    spec = load_spec(sms_seed_spec_text())
    method = fragment(SMS_API_BLOCK)["API"]["SendMessage"]
    values = {
        "from": "+61855555555",
        "to": "+61123456789",
        "extension": "101",
        "domain": "acme.example",
        "content": "Hello there!",
    }
    request = build_request(spec, method, values)
    assert request.http_method == "POST"
    assert request.url == "https://api.example.com/webhook"
    assert request.content_type == "application/json"
    assert request.json_body == values
    assert request.query == [] and request.form is None and request.multipart is None


def test_unset_values_drop_their_keys() -> None:
    spec = load_spec(sms_seed_spec_text())
    request = build_request(spec, spec.methods["SendMessage"], {"from": "+1", "to": "+2"})
    assert request.json_body == {"from": "+1", "to": "+2"}


def test_get_parameters_become_the_query() -> None:
    spec = crm_spec(
        API={
            "Contacts": {
                "request_method": "GET",
                "request_path": "/contacts",
                "request_parameters": {
                    "limit": 100,
                    "active": True,
                    "deleted": False,
                    "gone": None,
                    "missing": "$query$",
                    "ids": ["1", "$contact_id$"],
                    "filter": {"a": 1},
                },
            }
        }
    )
    request = build_request(spec, spec.methods["Contacts"], {**PROPERTIES, "contact_id": 5})
    assert request.url == "https://crm.example.com/api/contacts"
    assert request.query == [
        ("limit", "100"),
        ("active", "true"),
        ("deleted", "false"),
        ("ids", "1"),
        ("ids", "5"),
        ("filter", '{"a":1}'),
    ]
    assert request.json_body is None and request.content_type is None


def test_path_values_are_encoded_and_base_urls_are_not() -> None:
    spec = crm_spec(
        API={"SearchContacts": {"request_method": "GET", "request_path": "/search/$query$"}}
    )
    request = build_request(
        spec,
        spec.methods["SearchContacts"],
        {**PROPERTIES, "Instance URL": "https://crm.example.com/tenant-a", "query": "a/b c"},
    )
    assert request.url == "https://crm.example.com/tenant-a/api/search/a%2Fb%20c"


def test_a_value_that_starts_the_request_path_is_encoded() -> None:
    spec = crm_spec(
        API={"GetNotes": {"request_method": "GET", "request_path": "$user_name$/notes"}}
    )
    request = build_request(
        spec, spec.methods["GetNotes"], {**PROPERTIES, "user_name": "../../admin?x=1#"}
    )
    assert request.url == "https://crm.example.com/api/..%2F..%2Fadmin%3Fx%3D1%23/notes"


@given(value=st.text(min_size=1))
def test_a_leading_request_path_value_stays_one_segment_of_the_url(value: str) -> None:
    spec = crm_spec(
        API={"GetNotes": {"request_method": "GET", "request_path": "$user_name$/notes"}}
    )
    url = build_request(spec, spec.methods["GetNotes"], {**PROPERTIES, "user_name": value}).url
    parts = urlsplit(url)
    assert (parts.query, parts.fragment) == ("", "")
    segments = parts.path.split("/")
    assert segments[:2] == ["", "api"] and segments[-1] == "notes" and len(segments) == 4
    assert unquote(segments[2]) == value


def test_request_url_inserts_properties_as_written_and_encodes_parameters() -> None:
    spec = crm_spec(
        API={
            "GetActivity": {
                "request_method": "GET",
                "request_url": "https://x.example/$Client ID$/act/$activity_id$",
            }
        }
    )
    request = build_request(
        spec, spec.methods["GetActivity"], {**PROPERTIES, "Client ID": "a/b", "activity_id": "?"}
    )
    assert request.url == "https://x.example/a/b/act/%3F"


def test_missing_url_value_is_a_spec_error() -> None:
    spec = load_spec(crm_seed_spec_text())
    with pytest.raises(SpecError) as caught:
        build_request(spec, spec.methods["DeleteContact"], PROPERTIES, pointer="/API/DeleteContact")
    assert str(caught.value) == (
        "/API/DeleteContact/request_path: no value for $contact_id$, which the URL needs"
    )
    with pytest.raises(SpecError, match=r"\$Instance URL\$"):
        build_request(spec, spec.methods["DeleteContact"], {"contact_id": 1})


def test_non_http_url_is_refused_and_secrets_redacted() -> None:
    spec = crm_spec(
        API={"GetActivity": {"request_method": "GET", "request_url": "$Client Secret$/x"}}
    )
    with pytest.raises(SpecError) as caught:
        build_request(spec, spec.methods["GetActivity"], PROPERTIES)
    assert "s3cr" not in str(caught.value) and "not an absolute http(s) URL" in str(caught.value)


def test_headers_merge_spec_wide_and_method_and_refuse_injection() -> None:
    spec = crm_spec(
        request_headers={"Accept": "application/json", "X-Client": "$Client ID$"},
        API={
            "Users": {
                "request_method": "GET",
                "request_path": "/users",
                "request_headers": {"accept": "text/csv", "X-Note": "$note$", "X-Opt": "$query$"},
            }
        },
    )
    request = build_request(spec, spec.methods["Users"], {**PROPERTIES, "note": "hi"})
    assert request.headers == {"accept": "text/csv", "X-Client": "cid", "X-Note": "hi"}
    with pytest.raises(SpecError, match="X-Note"):
        build_request(spec, spec.methods["Users"], {**PROPERTIES, "note": "a\r\nX-Evil: 1"})


def test_form_body() -> None:
    spec = crm_spec(
        API={
            "CreateActivity": {
                "request_method": "POST",
                "request_path": "/calls",
                "request_content_type": "application/x-www-form-urlencoded",
                "request_parameters": {"to": "$phone$", "answered": True, "tags": ["a", "b"]},
            }
        }
    )
    request = build_request(spec, spec.methods["CreateActivity"], {**PROPERTIES, "phone": "+1"})
    assert request.form == [("to", "+1"), ("answered", "true"), ("tags", "a"), ("tags", "b")]
    assert request.content_type == "application/x-www-form-urlencoded"
    assert request.json_body is None


def test_multipart_parts() -> None:
    spec = crm_spec(
        API={
            "UploadRecording": {
                "request_method": "POST",
                "request_path": "/activities/$activity_id$/files",
                "request_content_type": "multipart/form-data",
                "request_parameters": {
                    "file": {
                        "file": "$recording_file$",
                        "filename": "call-$call_id$.mp3",
                        "content_type": "audio/mpeg",
                    },
                    "meta": {"value": {"id": "$activity_id$"}, "content_type": "application/json"},
                    "title": "Call $call_id$",
                    "voicemail": {"file": "$voicemail_url$"},
                    "skip": "$note$",
                },
            }
        }
    )
    request = build_request(
        spec,
        spec.methods["UploadRecording"],
        {**PROPERTIES, "activity_id": 9, "call_id": "c1", "recording_file": "/tmp/r.mp3"},
    )
    assert request.multipart == [
        MultipartPart(
            name="file", file="/tmp/r.mp3", filename="call-c1.mp3", content_type="audio/mpeg"
        ),
        MultipartPart(name="meta", value='{"id":9}', content_type="application/json"),
        MultipartPart(name="title", value="Call c1"),
    ]
    assert request.content_type == "multipart/form-data"


def test_text_body_for_other_content_types() -> None:
    spec = crm_spec(
        API={
            "CreateActivity": {
                "request_method": "POST",
                "request_path": "/soap",
                "request_content_type": "text/xml",
                "request_parameters": "<note>$note$</note>",
            }
        }
    )
    request = build_request(spec, spec.methods["CreateActivity"], {**PROPERTIES, "note": "x"})
    assert request.text_body == "<note>x</note>"


def test_variables_are_computed_and_text_values_are_typed() -> None:
    spec = crm_spec(
        variables={"call_duration_millis": "$call_duration$ * 1000"},
        API={
            "CreateActivity": {
                "request_method": "POST",
                "request_path": "/calls",
                "request_parameters": {"ms": "$call_duration_millis$", "d": "$call_duration$"},
            }
        },
    )
    request = build_request(
        spec, spec.methods["CreateActivity"], {**PROPERTIES, "call_duration": "42"}
    )
    assert request.json_body == {"ms": 42000, "d": 42}
    with pytest.raises(SpecError, match="call_duration"):
        prepare_context(spec, {"call_duration": "forty"})


def test_options_and_redaction() -> None:
    spec = crm_spec(
        API={
            "CreateContact": {
                "request_method": "POST",
                "request_path": "/contacts",
                "timeout": 5,
                "success_codes": [201],
                "retry_safe": True,
            }
        }
    )
    request = build_request(
        spec, spec.methods["CreateContact"], {**PROPERTIES, "access_token": "tok"}
    )
    assert request.timeout == 5.0 and request.success_codes == [201] and request.retry_safe
    assert {"s3cr/et=", "s3cr%2Fet%3D", "tok"} <= request.redact
    assert (
        request.redacted("https://x/?s=s3cr%2Fet%3D&t=tok")
        == "https://x/?s=[redacted]&t=[redacted]"
    )
    plain_post = build_request(
        spec, spec.methods["FindContact"] | {"request_method": "POST"}, PROPERTIES
    )
    assert not plain_post.retry_safe


def test_steps_must_be_built_one_by_one_and_when() -> None:
    spec = crm_spec(
        API={
            "CreateContact": [
                {"request_method": "POST", "request_path": "/a", "when": "$contact_id$ == 1"},
                {"request_method": "POST", "request_path": "/b"},
            ]
        }
    )
    with pytest.raises(SpecError, match="steps"):
        build_request(spec, spec.methods["CreateContact"], PROPERTIES)  # type: ignore[arg-type]
    first, second = spec.steps("CreateContact")
    assert should_run(spec, first, {"contact_id": "1"})
    assert not should_run(spec, first, {"contact_id": 2})
    assert not should_run(spec, first, {})
    assert should_run(spec, second, {})


def test_flatten_pairs_refuses_arrays() -> None:
    with pytest.raises(SpecError):
        flatten_pairs([1, 2])


def test_phone_variants() -> None:
    formats = ["e164", "national", "digits", "national_digits", "last10", "international"]
    assert phone_variants("+15551234567", formats, "US") == [
        "+15551234567",
        "(555) 123-4567",
        "15551234567",
        "5551234567",
        "+1 555-123-4567",
    ]
    assert phone_variants("+442079460018", ["national", "e164", "last7"], "GB") == [
        "020 7946 0018",
        "+442079460018",
        "9460018",
    ]
    # A foreign number has no national form for a US org.
    assert phone_variants("+442079460018", ["national", "e164"], "US") == ["+442079460018"]
    assert phone_variants("garbage", ["e164", "national", "digits"], "US") == ["garbage"]
    with pytest.raises(SpecError, match="unknown phone format"):
        phone_variants("+15551234567", ["fancy"], "US")
