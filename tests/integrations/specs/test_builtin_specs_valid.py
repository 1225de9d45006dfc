"""Every built-in spec loads cleanly and has what its class needs; CRM readiness is sensible."""

from __future__ import annotations

import importlib
import json
import pathlib

import pytest

from integrations.engine.readiness import MISSING, PARTIAL, PRESENT, readiness_report
from integrations.engine.spec import load_spec, validate_spec
from tests.integrations.specs.conftest import FIXTURES_DIR, SPECS_DIR, builtin_spec
from tests.integrations.specs.contract import HttpDoorContract

SPEC_FILES = sorted(SPECS_DIR.glob("*.json"))
BUILT_IN = {"example-crm", "zoho-phonebridge", "example-sms", "ringrx-sms"}


def test_the_built_in_specs_are_there() -> None:
    assert {path.stem for path in SPEC_FILES} >= BUILT_IN


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda path: path.stem)
def test_spec_loads_with_no_problems(path: pathlib.Path) -> None:
    assert validate_spec(json.loads(path.read_text(encoding="utf-8"))) == []
    spec = load_spec(path)

    assert spec.id == path.stem, "a built-in spec's file is named after its id"
    assert spec.name
    if spec.spec_class == "crm":
        assert spec.has_method("FindContact")
    else:
        assert spec.spec_class == "sms"
        assert spec.has_method("SendMessage")


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda path: path.stem)
def test_spec_has_recorded_fixtures(path: pathlib.Path) -> None:
    assert list((FIXTURES_DIR / path.stem).glob("*.json")), f"record fixtures for {path.stem}"


def test_every_built_in_spec_runs_the_http_door_contract() -> None:
    # Retries and the SSRF guard are checked per spec by a HttpDoorContract subclass in the
    # spec's test module; a new built-in spec without one fails here.
    for module in pathlib.Path(__file__).parent.glob("test_*.py"):
        importlib.import_module(f"{__package__}.{module.stem}")
    covered = {contract.spec_id for contract in HttpDoorContract.__subclasses__()}

    assert {path.stem for path in SPEC_FILES} - covered == set()


@pytest.mark.parametrize(
    ("spec_id", "secrets"),
    [
        ("example-crm", {"Client Secret"}),
        ("zoho-phonebridge", {"Client Secret", "Callback Token"}),
        ("ringrx-sms", {"API Secret", "Callback Token"}),
        ("example-sms", set()),
    ],
)
def test_credentials_are_secret_properties(spec_id: str, secrets: set[str]) -> None:
    assert builtin_spec(spec_id).secret_property_names == secrets


@pytest.mark.parametrize("spec_id", ["example-crm", "zoho-phonebridge"])
def test_crm_lookups_declare_phone_formats(spec_id: str) -> None:
    assert builtin_spec(spec_id).steps("FindContact")[0].get("phone_formats")


def test_example_crm_is_fully_ready() -> None:
    report = readiness_report(builtin_spec("example-crm"))

    assert report.score == 100
    assert report.core_ready
    assert report.missing == []


def test_zoho_readiness_reflects_an_event_style_crm() -> None:
    report = readiness_report(builtin_spec("zoho-phonebridge"))
    status = {c.key: c.status for c in report.capabilities}

    assert status["lookup_by_phone"] == PRESENT
    assert status["activity_create"] == PARTIAL  # Zoho logs the call from callhungup
    assert status["logout"] == PRESENT  # Uninstall
    assert status["recording_upload"] == PRESENT  # voiceurl
    assert status["user_list"] == PRESENT
    assert status["contact_create"] == MISSING  # PhoneBridge cannot create contacts
    assert not report.core_ready
    assert 0 < report.score < 100
