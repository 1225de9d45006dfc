"""Who the activity is logged to (match policies, hold for review, new contacts), CRM-side
edits that must survive our updates, and the recording uploaded once."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from integrations.call_logging import contacts_choose
from integrations.models import CallActivity
from integrations.sandbox.generic_crm import DEFAULT_API_KEY
from tests.factories import OrgAdminMembershipFactory
from tests.integrations.calls.support import (
    TWINS,
    UNKNOWN,
    call_event,
    crm_installation,
    deliver,
    mapped_user,
    organization,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def org() -> Any:
    return organization()


def _installation(org: Any, crm_server: Any, crm_user_id: str = "u-1001", **options: Any) -> Any:
    installation = crm_installation(org, crm_server, **options)
    mapped_user(installation, crm_user_id=crm_user_id)
    return installation


def _twin_call(call_id: str) -> dict[str, Any]:
    return call_event(call_id, "completed", caller_number=TWINS, caller_name="S. Twin")


@pytest.mark.parametrize(
    ("policy", "crm_user_id", "expected"),
    [
        ("owner", "u-1002", "c-6"),  # Sam is owned by the mapped user
        ("owner", "u-1001", "c-7"),  # Sally is
        ("recent", "u-1002", "c-7"),  # Sally updated 2024-07-01
        ("earliest", "u-1001", "c-6"),  # Sam created 2024-01-01
    ],
)
def test_several_matches_follow_the_match_policy(
    client: Any,
    org: Any,
    crm_server: Any,
    django_capture_on_commit_callbacks: Any,
    policy: str,
    crm_user_id: str,
    expected: str,
) -> None:
    _installation(org, crm_server, crm_user_id, match_policy=policy)

    deliver(client, org, _twin_call("c-300"), django_capture_on_commit_callbacks)

    [activity] = crm_server.activities_for_call("c-300")
    assert activity["contact_id"] == expected
    row = CallActivity.objects.get()
    assert row.contact_id == expected
    assert {c["contact_id"] for c in row.candidates} == {"c-6", "c-7"}


def test_the_all_policy_logs_one_activity_per_contact_and_updates_each(
    client: Any, org: Any, crm_server: Any, django_capture_on_commit_callbacks: Any
) -> None:
    _installation(org, crm_server, match_policy="all")

    deliver(
        client,
        org,
        call_event("c-301", "answered", caller_number=TWINS),
        django_capture_on_commit_callbacks,
    )
    deliver(
        client,
        org,
        call_event("c-301", "completed", caller_number=TWINS),
        django_capture_on_commit_callbacks,
    )

    activities = crm_server.activities_for_call("c-301")
    assert sorted(a["contact_id"] for a in activities) == ["c-6", "c-7"]
    assert all(a["duration"] == 285 for a in activities)  # both updated with the final data
    row = CallActivity.objects.get()
    assert len(row.other_activity_ids) == 1
    assert {row.activity_id, *row.other_activity_ids} == {a["id"] for a in activities}


def test_the_review_policy_holds_the_activity_until_an_admin_picks_the_contact(
    client: Any, org: Any, crm_server: Any, django_capture_on_commit_callbacks: Any
) -> None:
    _installation(org, crm_server, match_policy="review")
    admin = OrgAdminMembershipFactory(organization=org).user

    deliver(client, org, _twin_call("c-302"), django_capture_on_commit_callbacks)

    row = CallActivity.objects.get()
    assert row.state == "held"
    assert crm_server.activities_for_call("c-302") == []

    client.force_login(admin)
    page = client.get(f"/orgs/{org.pk}/calls/review/")
    assert page.status_code == 200
    assert b"Sally Twin" in page.content and b"Sam Twin" in page.content
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/orgs/{org.pk}/calls/activities/{row.pk}/resolve/", {"contact_id": "c-6"}
        )
    assert response.status_code == 302

    [activity] = crm_server.activities_for_call("c-302")
    assert activity["contact_id"] == "c-6"
    assert activity["duration"] == 285
    row.refresh_from_db()
    assert (row.state, row.contact_id, row.activity_id) == ("created", "c-6", activity["id"])
    assert client.get(f"/orgs/{org.pk}/calls/review/").content.count(b"Sam Twin") == 0


def test_resolving_with_a_contact_that_was_not_found_is_refused(
    client: Any, org: Any, crm_server: Any, django_capture_on_commit_callbacks: Any
) -> None:
    _installation(org, crm_server, match_policy="review")
    deliver(client, org, _twin_call("c-303"), django_capture_on_commit_callbacks)
    row = CallActivity.objects.get()
    client.force_login(OrgAdminMembershipFactory(organization=org).user)

    response = client.post(
        f"/orgs/{org.pk}/calls/activities/{row.pk}/resolve/", {"contact_id": "c-1"}, follow=True
    )

    assert b"Pick one of the contacts that were found" in response.content
    row.refresh_from_db()
    assert row.state == "held"


def test_an_unknown_caller_becomes_a_contact_when_the_installation_creates_contacts(
    client: Any, org: Any, crm_server: Any, django_capture_on_commit_callbacks: Any
) -> None:
    _installation(org, crm_server, create_contacts=True)

    deliver(
        client,
        org,
        call_event("c-304", "completed", caller_number=UNKNOWN, caller_name="Nora New"),
        django_capture_on_commit_callbacks,
    )

    [created] = [c for c in crm_server.state()["contacts"] if c["phone"] == UNKNOWN]
    assert (created["first_name"], created["last_name"]) == ("Nora", "New")
    assert created["owner_id"] == "u-1001"
    [activity] = crm_server.activities_for_call("c-304")
    assert activity["contact_id"] == created["id"]
    assert len(crm_server.requests_to("/contacts", "POST")) == 1


def test_an_unknown_caller_is_not_created_when_the_installation_does_not_create_contacts(
    client: Any, org: Any, crm_server: Any, django_capture_on_commit_callbacks: Any
) -> None:
    _installation(org, crm_server, create_contacts=False)

    deliver(
        client,
        org,
        call_event("c-305", "completed", caller_number=UNKNOWN),
        django_capture_on_commit_callbacks,
    )

    assert crm_server.requests_to("/contacts", "POST") == []
    [activity] = crm_server.activities_for_call("c-305")
    assert not activity.get("contact_id")


def test_fields_edited_in_the_crm_are_not_overwritten_by_the_update(
    client: Any,
    org: Any,
    crm_server: Any,
    recordings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    _installation(org, crm_server)
    deliver(client, org, call_event("c-306", "answered"), django_capture_on_commit_callbacks)
    [activity] = crm_server.activities_for_call("c-306")
    # A salesperson edits the notes in the CRM.
    edited = requests.put(
        f"{crm_server.url}/activities/{activity['id']}",
        json={"notes": "Wants a quote for 20 seats", "version": activity["version"]},
        headers={"X-API-Key": DEFAULT_API_KEY},
        timeout=5,
    )
    assert edited.status_code == 200

    deliver(client, org, call_event("c-306", "completed"), django_capture_on_commit_callbacks)
    deliver(
        client,
        org,
        call_event("c-306", "completed", recording_url=f"{recordings.url}/r/c-306.wav"),
        django_capture_on_commit_callbacks,
    )

    [activity] = crm_server.activities_for_call("c-306")
    assert activity["notes"] == "Wants a quote for 20 seats"  # kept, twice
    assert activity["duration"] == 285  # the rest is updated
    assert activity["recording_url"] == f"{recordings.url}/r/c-306.wav"
    assert len(crm_server.requests_to(f"/activities/{activity['id']}", "GET")) == 2
    assert CallActivity.objects.get().state == "created"


def test_without_crm_edits_the_update_writes_every_field(
    client: Any, org: Any, crm_server: Any, django_capture_on_commit_callbacks: Any
) -> None:
    _installation(org, crm_server)
    deliver(client, org, call_event("c-307", "answered"), django_capture_on_commit_callbacks)
    deliver(client, org, call_event("c-307", "completed"), django_capture_on_commit_callbacks)

    [activity] = crm_server.activities_for_call("c-307")
    assert "Status: completed" in activity["notes"]


def test_the_recording_is_uploaded_once(
    client: Any,
    org: Any,
    crm_server: Any,
    recordings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    _installation(org, crm_server)
    url = f"{recordings.url}/rec/c-308.wav"
    deliver(client, org, call_event("c-308", "completed"), django_capture_on_commit_callbacks)
    deliver(
        client,
        org,
        call_event("c-308", "completed", recording_url=url, event_id="rec-1"),
        django_capture_on_commit_callbacks,
    )
    deliver(
        client,
        org,
        call_event("c-308", "completed", recording_url=url, event_id="rec-2"),
        django_capture_on_commit_callbacks,
    )

    [activity] = crm_server.activities_for_call("c-308")
    assert len(activity["recordings"]) == 1
    assert activity["recordings"][0]["filename"] == "call-c-308.mp3"
    assert len(recordings.requests_to("/rec/c-308.wav")) == 1
    assert CallActivity.objects.get().recording_uploaded


def test_contacts_choose_falls_back_when_the_compared_field_is_missing() -> None:
    records = [{"contact_id": "a"}, {"contact_id": "b"}]
    assert contacts_choose(records, policy="owner", user_id="u-9") == [records[0]]
    assert contacts_choose(records, policy="recent") == [records[0]]
    assert contacts_choose(records, policy="earliest") == [records[0]]
    assert contacts_choose(records, policy="all") == records
    assert contacts_choose(records, policy="review") == []
