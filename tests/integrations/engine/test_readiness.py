"""The App Connect readiness report of CRM specs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from integrations.engine.errors import SpecError
from integrations.engine.readiness import readiness_report
from integrations.engine.spec import load_spec
from tests.integrations.engine.seed_examples import crm_seed_spec_text, sms_seed_spec_text


def method(path: str, verb: str = "POST", **extra: Any) -> dict[str, Any]:
    return {"request_method": verb, "request_path": path, **extra}


def full_crm() -> dict[str, Any]:
    data = json.loads(crm_seed_spec_text())
    data["contact_url"] = "$Instance URL$/contacts/$contact_id$"
    data["activity_url"] = "$Instance URL$/activities/$activity_id$"
    data["authentication"]["revoke_url"] = "$Instance URL$/oauth/revoke"
    data["API"].update(
        {
            "GetUserInfo": method("/me", "GET"),
            "Users": method(
                "/users",
                "GET",
                response_map={"records": [{"Id": "$user_id$", "Email": "$user_email$"}]},
            ),
            "SearchContacts": method("/contacts", "GET", request_parameters={"q": "$query$"}),
            "CreateContact": method("/contacts"),
            "CreateActivity": method("/activities"),
            "UpdateActivity": method("/activities/$activity_id$", "PATCH"),
            "GetActivity": method("/activities/$activity_id$", "GET"),
            "ChangeActivityStatus": method("/activities/$activity_id$/status", "PUT"),
            "UploadRecording": method("/activities/$activity_id$/recording"),
            "CreateMessageLog": method("/messages"),
        }
    )
    data["API"]["FindContact"]["phone_formats"] = ["e164", "national"]
    return data


def test_full_spec_scores_100() -> None:
    report = readiness_report(load_spec(full_crm()))
    assert report.score == 100
    assert report.core_ready
    assert report.missing == []
    as_dict = report.to_dict()
    assert as_dict["spec_id"] == "ExampleCRM" and as_dict["score"] == 100
    by_key = {c["key"]: c for c in as_dict["capabilities"]}
    assert by_key["lookup_by_phone"]["methods"] == ["FindContact"]
    assert by_key["activity_update"]["methods"] == ["UpdateActivity"]
    json.dumps(as_dict)  # JSON-ready


def test_seed_spec_lists_what_is_missing() -> None:
    report = readiness_report(load_spec(crm_seed_spec_text()))
    status = {c.key: c.status for c in report.capabilities}
    assert status["lookup_by_phone"] == "present"
    assert status["auth_validation"] == "partial"  # only through Users
    assert status["user_list"] == "partial"  # no user_email captured
    for key in ("activity_create", "activity_update", "activity_read", "contact_create"):
        assert status[key] == "missing"
    assert status["logout"] == "missing"  # oauth2 without revoke_url, Logout or Uninstall
    assert not report.core_ready
    assert 0 < report.score < 50
    text = report.to_text()
    assert text.startswith("Readiness of Example CRM (ExampleCRM):")
    assert "[ ] Activity creation" in text
    assert "[x] Contact lookup by phone via FindContact" in text
    assert "only E.164" in text


def test_partial_grades() -> None:
    data = full_crm()
    data["API"]["UpdateActivity"] = method("/activities", "PATCH")
    del data["API"]["UploadRecording"]
    data["API"]["CreateActivity"]["request_parameters"] = {"rec": "$recording_url$"}
    report = readiness_report(load_spec(data))
    by_key = {c.key: c for c in report.capabilities}
    assert by_key["activity_update"].status == "partial"
    assert "activity_id" in by_key["activity_update"].note
    assert by_key["recording_upload"].status == "partial"
    assert by_key["recording_upload"].methods == ("CreateActivity",)
    assert report.score < 100


def test_event_style_crm_counts_as_partial_activity_creation() -> None:
    data = json.loads(crm_seed_spec_text())
    data["API"]["CallEnded"] = method("/calls/ended")
    report = readiness_report(load_spec(data))
    create = next(c for c in report.capabilities if c.key == "activity_create")
    assert create.status == "partial" and create.methods == ("CallEnded",)


def test_sms_specs_are_not_graded() -> None:
    with pytest.raises(SpecError):
        readiness_report(load_spec(sms_seed_spec_text()))
