"""Response maps: captures, records, indexing, numbered fields, coercion, outputs, filter."""

from __future__ import annotations

import json
from typing import Any

import pytest

from integrations.engine.errors import SpecError
from integrations.engine.mapping import (
    MappedResponse,
    apply_response_map,
    coerce_value,
    map_response,
)
from integrations.engine.spec import Spec, load_spec
from tests.integrations.engine.seed_examples import (
    CRM_USERS_RESPONSE_MAP,
    SMS_API_BLOCK,
    crm_seed_spec_text,
    fragment,
    sms_seed_spec_text,
)


def crm_spec(**api: Any) -> Spec:
    data = json.loads(crm_seed_spec_text())
    data["parameters"].update(
        {"first_name": "string", "last_name": "string", "urls": "array", "emails": "array"}
    )
    data["parameters"]["owner"] = "object"
    data["parameters"]["active"] = "boolean"
    data["parameters"]["total"] = "integer"
    data["API"].update(api)
    return load_spec(data)


def test_seed_users_map_yields_typed_records() -> None:
    spec = load_spec(crm_seed_spec_text())
    response_map = fragment(CRM_USERS_RESPONSE_MAP)["response_map"]
    body = {"records": [{"Id": "12", "Name": "Ann", "Extra": 1}, {"Id": 7, "Name": "Bob"}]}
    mapped = apply_response_map(response_map, body, types=spec.types)
    assert mapped.is_list
    # user_id is declared "number" in the seed: "12" becomes 12.
    assert mapped.records == [
        {"user_id": 12, "user_name": "Ann"},
        {"user_id": 7, "user_name": "Bob"},
    ]


def test_seed_sms_send_message_map() -> None:
    spec = load_spec(sms_seed_spec_text())
    method = fragment(SMS_API_BLOCK)["API"]["SendMessage"]
    mapped = map_response(spec, method, body=b'{"data": {"id": "SM123", "status": "queued"}}')
    assert mapped.values == {"messageid": "SM123"}
    assert not mapped.is_list
    assert mapped.first() == {"messageid": "SM123"}


def test_missing_path_leaves_values_unset() -> None:
    mapped = apply_response_map({"data": {"id": "$messageid$"}}, {"other": 1})
    assert mapped.values == {} and mapped.records == []


def test_empty_or_non_json_body_maps_nothing() -> None:
    spec = load_spec(crm_seed_spec_text())
    for body in (b"", b"   ", b"<html>oops</html>", None):
        mapped = map_response(spec, spec.methods["FindContact"], body=body)
        assert mapped.records == [] and mapped.values == {} and mapped.is_list


def test_root_array_and_single_object_for_a_list() -> None:
    template = [{"id": "$contact_id$"}]
    assert apply_response_map(template, [{"id": 1}, {"id": 2}]).records == [
        {"contact_id": 1},
        {"contact_id": 2},
    ]
    # An API returning one object where the map describes a list gives one record.
    assert apply_response_map(template, {"id": 3}).records == [{"contact_id": 3}]


def test_index_keys_pick_one_element() -> None:
    template = {"data": {"[0]": {"id": "$contact_id$"}, "[-1]": {"id": "$account_id$"}}}
    mapped = apply_response_map(template, {"data": [{"id": "a"}, {"id": "b"}, {"id": "c"}]})
    assert mapped.values == {"contact_id": "a", "account_id": "c"}
    assert not mapped.is_list
    assert apply_response_map(template, {"data": []}).values == {}


def test_numbered_fields_collect_into_a_list() -> None:
    template = {"MediaUrl*": "$urls$", "From": "$from$"}
    body = {"MediaUrl1": "b", "MediaUrl0": "a", "MediaUrl10": "k", "MediaUrlX": "no", "From": "x"}
    mapped = apply_response_map(template, body, types={"urls": "array"})
    assert mapped.values["urls"] == ["a", "b", "k"]
    assert apply_response_map(template, {}).values == {"urls": []}


def test_nested_each_inside_a_record() -> None:
    spec = crm_spec()
    template = {
        "data": [
            {
                "id": "$contact_id$",
                "emails": [{"value": "$emails$"}],
                "phones": [{"number": "$contact_phone$"}],
            }
        ]
    }
    body = {
        "data": [
            {
                "id": 1,
                "emails": [{"value": "a@x"}, {"value": "b@x"}],
                "phones": [{"number": "+15551234567"}, {"number": "+15557654321"}],
            }
        ]
    }
    mapped = apply_response_map(template, body, types=spec.types)
    # Declared array: all values; otherwise the first one.
    assert mapped.records == [
        {"contact_id": 1, "emails": ["a@x", "b@x"], "contact_phone": "+15551234567"}
    ]


def test_top_level_values_and_records_together() -> None:
    spec = crm_spec()
    template = {"total": "$total$", "records": [{"Id": "$contact_id$"}]}
    mapped = apply_response_map(
        template, {"total": "2", "records": [{"Id": 1}, {"Id": 2}]}, types=spec.types
    )
    assert mapped.values == {"total": 2}
    assert [r["contact_id"] for r in mapped.records] == [1, 2]  # contact_id is "number"


def test_positional_array_template() -> None:
    mapped = apply_response_map(["$contact_id$", "$contact_name$"], ["9", "Ann"])
    assert mapped.values == {"contact_id": "9", "contact_name": "Ann"}


def test_null_is_captured_as_none() -> None:
    assert apply_response_map({"a": "$note$"}, {"a": None}).values == {"note": None}


@pytest.mark.parametrize(
    ("value", "type_name", "expected"),
    [
        ("12", "number", 12),
        ("1.5", "number", 1.5),
        (3, "number", 3),
        ("", "number", None),
        ("12", "integer", 12),
        (12.0, "integer", 12),
        ("true", "boolean", True),
        ("No", "boolean", False),
        (1, "boolean", True),
        (12, "string", "12"),
        (True, "string", "true"),
        ({"a": 1}, "string", '{"a":1}'),
        ("2024-07-13T18:27:25+02:00", "ISO8601Date", "2024-07-13T16:27:25Z"),
        ("2024-07-13 18:27:25", "ISO8601Date", "2024-07-13T18:27:25Z"),
        (1720898845, "ISO8601Date", "2024-07-13T19:27:25Z"),
        (1720898845123, "ISO8601Date", "2024-07-13T19:27:25.123Z"),
        ("2024-07-13", "ISO8601Date", "2024-07-13"),
        ("13/07/2024", "ISO8601Date", "13/07/2024"),
        ("(555) 123-4567", "phone", "+15551234567"),
        ("not a phone", "phone", "not a phone"),
        ('{"a": 1}', "object", {"a": 1}),
        ("x", "array", ["x"]),
        (None, "integer", None),
        ("anything", None, "anything"),
    ],
)
def test_coerce_value(value: Any, type_name: str | None, expected: Any) -> None:
    assert coerce_value(value, type_name) == expected


@pytest.mark.parametrize(
    ("value", "type_name"),
    [("abc", "number"), ("1.5", "integer"), (True, "number"), ("maybe", "boolean"), (5, "object")],
)
def test_coerce_value_refuses(value: Any, type_name: str) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        coerce_value(value, type_name)


def test_bad_capture_type_is_a_spec_error_with_pointer() -> None:
    spec = load_spec(crm_seed_spec_text())
    with pytest.raises(SpecError) as caught:
        map_response(
            spec,
            spec.methods["Users"],
            body=b'{"records": [{"Id": "005xx", "Name": "Ann"}]}',
            pointer="/API/Users",
        )
    problem = caught.value.problems[0]
    assert problem.pointer == "/API/Users/response_map/records/0/Id"
    assert "user_id" in problem.message


def test_response_headers_map() -> None:
    spec = crm_spec(
        CreateContact={
            "request_method": "POST",
            "request_path": "/contacts",
            "response_headers_map": {"Location": "$url$", "X-Total": "$total$"},
        }
    )
    mapped = map_response(
        spec,
        spec.methods["CreateContact"],
        body=b"",
        headers={"location": "https://crm/contacts/77", "x-total": "3"},
    )
    assert mapped.values == {"url": "https://crm/contacts/77", "total": 3}


def test_outputs_and_filter() -> None:
    spec = crm_spec(
        SearchContacts={
            "request_method": "GET",
            "request_path": "/search",
            "response_map": {
                "items": [
                    {
                        "id": "$contact_id$",
                        "first": "$first_name$",
                        "last": "$last_name$",
                        "active": "$active$",
                    }
                ]
            },
            "outputs": {
                "contact_name": "join(' ', [$first_name$, $last_name$])",
                "contact_first_name": "upper($contact_name$)",
            },
            "filter": "$active$",
        }
    )
    body = {
        "items": [
            {"id": 1, "first": "Ann", "last": "Lee", "active": "true"},
            {"id": 2, "first": "Bob", "active": "false"},
            {"id": 3, "first": "Cy", "active": "1"},
        ]
    }
    mapped = map_response(spec, spec.methods["SearchContacts"], body=json.dumps(body))
    assert [(r["contact_id"], r["contact_name"]) for r in mapped.records] == [
        (1, "Ann Lee"),
        (3, "Cy"),
    ]
    assert mapped.records[0]["contact_first_name"] == "ANN LEE"


def test_outputs_on_a_single_object_and_context() -> None:
    spec = crm_spec(
        CreateContact={
            "request_method": "POST",
            "request_path": "/contacts",
            "response_map": {"id": "$contact_id$"},
            "outputs": {"contact_name": "$query$ + '#' + str($contact_id$)"},
        }
    )
    mapped = map_response(
        spec, spec.methods["CreateContact"], body={"id": 5}, context={"query": "Ann"}
    )
    assert mapped.values == {"contact_id": 5, "contact_name": "Ann#5"}


def test_as_records() -> None:
    assert MappedResponse(values={"a": 1}).as_records() == [{"a": 1}]
    assert MappedResponse().as_records() == []
    assert MappedResponse(records=[{"a": 1}], is_list=True).as_records() == [{"a": 1}]
