"""One CRM activity per call, whatever the order or repetition of the PBX's events
(generic CRM sandbox, built-in example-crm spec, events through the real webhook endpoint)."""

from __future__ import annotations

from typing import Any

import pytest

from integrations.call_logging import call_event_apply
from integrations.models import Call, CallActivity, DeliveryLogEntry, InboxEvent
from tests.integrations.calls.support import (
    CALLER,
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


@pytest.fixture
def installation(org: Any, crm_server: Any) -> Any:
    installation = crm_installation(org, crm_server)
    mapped_user(installation)
    return installation


def test_a_call_creates_one_activity_then_updates_it_with_the_final_data(
    client: Any, org: Any, installation: Any, crm_server: Any, django_capture_on_commit_callbacks
) -> None:
    deliver(client, org, call_event("c-100", "ringing"), django_capture_on_commit_callbacks)
    assert crm_server.activities_for_call("c-100") == []
    assert len(crm_server.requests_to("/contacts/search")) == 1

    deliver(client, org, call_event("c-100", "answered"), django_capture_on_commit_callbacks)
    deliver(client, org, call_event("c-100", "completed"), django_capture_on_commit_callbacks)

    [activity] = crm_server.activities_for_call("c-100")
    assert activity["contact_id"] == "c-1"
    assert activity["user_id"] == "u-1001"
    assert activity["direction"] == "inbound"
    assert activity["duration"] == 285
    assert activity["end"] == "2025-03-01T10:04:51Z"
    assert "completed" in activity["notes"]
    assert len(crm_server.requests_to("/activities", "POST")) == 1
    assert len(crm_server.requests_to("/contacts/search")) == 1  # looked up once

    row = CallActivity.objects.get()
    assert (row.state, row.activity_id, row.contact_id) == ("created", activity["id"], "c-1")
    log = DeliveryLogEntry.objects.filter(installation=installation, method_name="CreateActivity")
    assert log.get().produced_ids == {"activity_id": activity["id"]}


def test_a_duplicate_webhook_creates_one_activity(
    client: Any, org: Any, installation: Any, crm_server: Any, django_capture_on_commit_callbacks
) -> None:
    body = call_event("c-101", "completed", event_id="evt-1")
    first = deliver(client, org, body, django_capture_on_commit_callbacks)
    second = deliver(client, org, body, django_capture_on_commit_callbacks)

    assert (first.status_code, second.json()["status"]) == (202, "duplicate")
    assert len(crm_server.activities_for_call("c-101")) == 1
    assert InboxEvent.objects.count() == 1


def test_the_same_event_processed_twice_still_creates_one_activity(
    client: Any, org: Any, installation: Any, crm_server: Any, django_capture_on_commit_callbacks
) -> None:
    from integrations.call_logging import call_event_received

    deliver(client, org, call_event("c-102", "completed"), django_capture_on_commit_callbacks)
    event = InboxEvent.objects.get()
    call_event_received(event)  # a worker killed after the handler ran: the event runs again

    assert len(crm_server.activities_for_call("c-102")) == 1
    assert len(crm_server.requests_to("/activities", "POST")) == 1


def test_a_hangup_before_the_answer_yields_one_activity_with_the_final_data(
    client: Any, org: Any, installation: Any, crm_server: Any, django_capture_on_commit_callbacks
) -> None:
    deliver(client, org, call_event("c-103", "completed"), django_capture_on_commit_callbacks)
    deliver(client, org, call_event("c-103", "answered"), django_capture_on_commit_callbacks)
    deliver(client, org, call_event("c-103", "ringing"), django_capture_on_commit_callbacks)

    [activity] = crm_server.activities_for_call("c-103")
    assert activity["duration"] == 285
    assert activity["end"] == "2025-03-01T10:04:51Z"
    call = Call.objects.get(call_id="c-103")
    assert call.status == "completed"
    assert call.data["duration"] == 285
    assert len(crm_server.requests_to("/activities", "POST")) == 1
    assert crm_server.requests_to("/activities/*", "PUT") == []  # nothing new to write


def test_events_never_move_the_status_back_and_late_events_only_fill_gaps(org: Any) -> None:
    call_event_apply(organization=org, event=call_event("c-104", "completed", caller_name=None))
    call = call_event_apply(
        organization=org, event=call_event("c-104", "ringing", duration=3, caller_name="Jane")
    )
    assert call.status == "completed"
    assert call.data["duration"] == 285  # the final event's value wins
    assert call.data["caller_name"] == "Jane"  # a gap filled
    assert call.data["phone"] == CALLER


def test_a_missed_call_is_logged_at_once(
    client: Any, org: Any, installation: Any, crm_server: Any, django_capture_on_commit_callbacks
) -> None:
    deliver(client, org, call_event("c-105", "ringing"), django_capture_on_commit_callbacks)
    deliver(client, org, call_event("c-105", "missed"), django_capture_on_commit_callbacks)

    [activity] = crm_server.activities_for_call("c-105")
    assert activity["duration"] == 0
    assert "missed" in activity["notes"]
