"""Event-style CRMs: Zoho PhoneBridge is told about the call as it happens (callreceived →
callanswered → callhungup) and logs exactly one call activity."""

from __future__ import annotations

from typing import Any

import pytest

from integrations.models import CallActivity
from tests.integrations.calls.support import (
    call_event,
    deliver,
    mapped_user,
    organization,
    zoho_installation,
)

pytestmark = pytest.mark.django_db

ZOHO_USER = "4150868000000225013"


@pytest.fixture
def org() -> Any:
    return organization()


@pytest.fixture
def installation(org: Any, zoho_server: Any) -> Any:
    installation = zoho_installation(org, zoho_server)
    mapped_user(installation, crm_user_id=ZOHO_USER)
    return installation


def test_a_call_is_reported_as_it_happens_and_logged_once(
    client: Any, org: Any, installation: Any, zoho_server: Any, django_capture_on_commit_callbacks
) -> None:
    for status in ("ringing", "answered", "completed"):
        deliver(client, org, call_event("z-1", status), django_capture_on_commit_callbacks)
    # The PBX repeats the hangup (another event id): nothing more is sent.
    deliver(
        client,
        org,
        call_event("z-1", "completed", event_id="again"),
        django_capture_on_commit_callbacks,
    )

    assert [e["event"] for e in zoho_server.events_for("z-1")] == [
        "callreceived",
        "callanswered",
        "callhungup",
    ]
    [activity] = zoho_server.activities_for("z-1")
    assert activity["callstarttime"] == "2025-03-01 10:00:00"  # GMT, yyyy-MM-dd HH:mm:ss
    assert activity["duration"] == "285"
    assert activity["direction"] == "inbound"
    assert activity["fromnumber"] == "0014155550100"
    assert activity["userid"] == ZOHO_USER
    assert [e["Module"] for e in activity["entity"]] == ["Contacts"]
    row = CallActivity.objects.get()
    assert row.state == "created"
    assert row.contact_id  # Zoho answered the caller's record


def test_a_hangup_arriving_first_still_logs_one_activity_with_the_final_data(
    client: Any, org: Any, installation: Any, zoho_server: Any, django_capture_on_commit_callbacks
) -> None:
    for status in ("completed", "answered", "ringing"):
        deliver(client, org, call_event("z-2", status), django_capture_on_commit_callbacks)

    [activity] = zoho_server.activities_for("z-2")
    assert activity["duration"] == "285"
    # Live notifications of a call already over are not sent.
    assert [e["event"] for e in zoho_server.events_for("z-2")] == ["callhungup"]


def test_a_missed_inbound_call_is_logged_as_missed(
    client: Any, org: Any, installation: Any, zoho_server: Any, django_capture_on_commit_callbacks
) -> None:
    deliver(client, org, call_event("z-3", "ringing"), django_capture_on_commit_callbacks)
    deliver(client, org, call_event("z-3", "missed"), django_capture_on_commit_callbacks)

    [activity] = zoho_server.activities_for("z-3")
    assert activity["event"] == "callmissed"
    assert activity["callstarttime"] == "2025-03-01 10:00:00"


def test_an_outbound_call_is_dialed_then_logged(
    client: Any, org: Any, installation: Any, zoho_server: Any, django_capture_on_commit_callbacks
) -> None:
    outbound = {
        "direction": "outbound",
        "caller_number": "101",
        "caller_name": "Agent",
        "called_number": "+14155550100",
    }
    for status in ("ringing", "answered", "completed"):
        deliver(
            client, org, call_event("z-4", status, **outbound), django_capture_on_commit_callbacks
        )

    events = zoho_server.events_for("z-4")
    assert [e["event"] for e in events] == ["calldialed", "callanswered", "callhungup"]
    assert events[0]["params"]["customerstatus"] == "inprogress"
    [activity] = zoho_server.activities_for("z-4")
    assert activity["direction"] == "outbound"
    assert activity["tonumber"] == "0014155550100"


def test_a_recording_arriving_after_the_hangup_is_attached_once(
    client: Any, org: Any, installation: Any, zoho_server: Any, django_capture_on_commit_callbacks
) -> None:
    deliver(client, org, call_event("z-5", "completed"), django_capture_on_commit_callbacks)
    url = "https://pbx.example.com/rec/z-5.wav"
    for n in range(2):
        deliver(
            client,
            org,
            call_event("z-5", "completed", recording_url=url, event_id=f"rec-{n}"),
            django_capture_on_commit_callbacks,
        )

    assert zoho_server.state()["voice_urls"] == [{"callrefid": "z-5", "voiceurl": url}]
    [activity] = zoho_server.activities_for("z-5")
    assert activity["voiceurl"] == url
    assert CallActivity.objects.get().recording_uploaded
