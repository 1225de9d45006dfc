"""Step order: a step only uses what the caller or an earlier step supplies (DESIGN 4.9).

Validation checks every step's placeholders against what earlier steps can capture, for
declared parameters and system values alike, and does the same for the `Install` sequence
(each Install request sees the captures of those before it).
"""

from __future__ import annotations

import copy
import json
import pathlib
import re
from typing import Any

import pytest

from integrations.engine.spec import load_spec, validate_spec

ROOT = pathlib.Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "spec-language.md"
_SPEC_BLOCK = re.compile(r"<!-- spec -->\s*```json\n(.*?)```", re.S)


def doc_find_or_create() -> dict[str, Any]:
    """The find-or-create example of the spec-language reference (section 12)."""
    blocks = _SPEC_BLOCK.findall(DOC.read_text(encoding="utf-8"))
    return next(json.loads(b) for b in blocks if json.loads(b)["id"] == "steps-example")


def messages(data: dict[str, Any]) -> list[str]:
    return [str(p) for p in validate_spec(data)]


def test_the_doc_example_in_its_own_order_is_valid() -> None:
    assert validate_spec(doc_find_or_create()) == []


def test_creating_the_contact_before_the_account_lookup_is_reported() -> None:
    data = doc_find_or_create()
    lookup, create_account, create_contact = data["API"]["CreateContact"]
    data["API"]["CreateContact"] = [create_contact, lookup, create_account]
    problems = messages(data)
    assert (
        "/API/CreateContact/0: step 0 uses $account_id$, which only step 1 captures (later): "
        "reorder the steps"
    ) in problems, problems


def test_a_system_value_used_in_a_when_before_its_capture_is_reported() -> None:
    data = doc_find_or_create()
    lookup, create_account, create_contact = data["API"]["CreateContact"]
    # The contact step reads account_id only in its condition, and runs before the lookup.
    del create_contact["request_parameters"]["account_id"]
    create_contact["when"] = "len($account_id$) > 0"
    data["API"]["CreateContact"] = [create_contact, lookup, create_account]
    problems = messages(data)
    assert any(
        p.startswith("/API/CreateContact/0: step 0 uses $account_id$, which only step 1")
        for p in problems
    ), problems


def test_a_value_an_earlier_step_also_captures_is_fine() -> None:
    data = doc_find_or_create()
    # Step 1 (the fallback) re-captures account_id; step 2 uses it: both earlier steps set it.
    assert validate_spec(data) == []
    data["API"]["CreateContact"][2]["request_parameters"]["account_id"] = "$account_id$"
    assert validate_spec(data) == []


def install_spec() -> dict[str, Any]:
    return {
        "id": "install-order",
        "name": "Install order",
        "class": "crm",
        "properties": [{"name": "Base URL", "type": "url"}, {"name": "API Key", "type": "secret"}],
        "parameters": {"call_type_id": "string", "pipeline_id": "string"},
        "resource_url": "$Base URL$",
        "authentication": {"type": "bearer", "token": "$API Key$"},
        "Install": [
            {
                "request_method": "GET",
                "request_path": "/pipelines",
                "response_map": {"data": {"[0]": {"id": "$pipeline_id$"}}},
            },
            {
                "request_method": "GET",
                "request_path": "/pipelines/$pipeline_id$/activity-types",
                "response_map": {"data": {"[0]": {"id": "$call_type_id$"}}},
            },
        ],
        "API": {
            "FindContact": {
                "request_method": "GET",
                "request_path": "/contacts",
                "request_parameters": {"phone": "$phone$", "type": "$call_type_id$"},
                "response_map": {"records": [{"id": "$contact_id$"}]},
            }
        },
    }


def test_install_in_order_is_valid() -> None:
    assert validate_spec(install_spec()) == []


def test_install_request_using_a_later_install_capture_is_reported() -> None:
    data = install_spec()
    data["Install"].reverse()
    problems = messages(data)
    assert (
        "/Install/0: Install request 0 uses $pipeline_id$, which only Install request 1 "
        "captures (later): reorder the requests"
    ) in problems, problems


def test_api_methods_may_use_install_captures_in_any_step() -> None:
    data = install_spec()
    data["API"]["CreateContact"] = [
        {
            "request_method": "POST",
            "request_path": "/contacts",
            "request_parameters": {"pipeline": "$pipeline_id$"},
        },
        {
            "request_method": "GET",
            "request_path": "/pipelines",
            "response_map": {"data": {"[0]": {"id": "$pipeline_id$"}}},
        },
    ]
    assert validate_spec(data) == []


BUILT_IN = sorted((ROOT / "integrations" / "specs").glob("*.json"))
FIXTURES = sorted((ROOT / "tests" / "fixtures" / "v11").glob("*.json"))


@pytest.mark.parametrize("path", BUILT_IN + FIXTURES, ids=lambda p: p.name)
def test_built_in_and_fixture_specs_still_validate(path: pathlib.Path) -> None:
    load_spec(path)


def test_reordering_a_built_in_spec_with_steps_is_caught() -> None:
    """At least one shipped spec has chained steps, and breaking its order is reported."""
    found = False
    for path in BUILT_IN + FIXTURES:
        data = json.loads(path.read_text(encoding="utf-8"))
        for name, method in (data.get("API") or {}).items():
            if not isinstance(method, list) or len(method) < 2:
                continue
            broken = copy.deepcopy(data)
            broken["API"][name] = list(reversed(method))
            if any("reorder the steps" in m for m in messages(broken)):
                found = True
    assert found
