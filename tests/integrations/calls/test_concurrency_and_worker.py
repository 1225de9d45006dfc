"""Exactly one CreateActivity when two workers process the same call at the same time, a
RingRx CDR logs the call, and the whole path through a real Celery worker process."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from django.db import connection

from integrations.call_logging import call_event_apply, call_log_to_installation
from integrations.models import Call, CallActivity, InboxEvent
from tests.integrations.calls.support import (
    call_event,
    crm_installation,
    deliver,
    mapped_user,
    organization,
    post_event,
)
from tests.support.processes import celery_worker, redis_url_for_tests, wait_until


@pytest.fixture(autouse=True)
def postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("concurrent workers need a database they can share (PostgreSQL)")


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_runs_of_one_call_create_one_activity(crm_server: Any) -> None:
    org = organization()
    installation = crm_installation(org, crm_server)
    mapped_user(installation)
    call_event_apply(organization=org, event=call_event("c-400", "completed"))
    # Hold the first CreateActivity in the CRM so the second run arrives while it is in flight.
    crm_server.delay_next("/activities", seconds=0.5, method="POST")
    start = threading.Barrier(2)
    outcomes: list[Any] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            start.wait()
            outcomes.append(
                call_log_to_installation(installation_id=installation.pk, call_id="c-400")
            )
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert [o.state for o in outcomes] == ["created", "created"]
    assert len(crm_server.requests_to("/activities", "POST")) == 1
    assert len(crm_server.activities_for_call("c-400")) == 1
    assert CallActivity.objects.count() == 1


@pytest.mark.django_db
def test_a_ringrx_cdr_logs_the_call(
    client: Any, crm_server: Any, django_capture_on_commit_callbacks: Any
) -> None:
    org = organization()
    installation = crm_installation(org, crm_server)
    mapped_user(installation, extension="1001")
    cdr = {
        "id": 5512345,
        "domain_name": "customer.ringrx.com",
        "aleg_uuid": "8d6f4c1e-0000-4000-8000-000000000001",
        "responsible_party": "1001",
        "start_time": "2025-03-01T10:00:00+00:00",
        "hangup_cause": "NORMAL_CLEARING",
        "dialed_digits": "8185559876",
        "calling_party": "+14155550100",
        "caller_id_number": "+14155550100",
        "caller_id_name": "Jane Doe",
        "duration": 95,
        "bill_duration": 87,
        "direction": "inbound",
        "mailbox": None,
        "aleg_holdtime": 0,
        "bleg_holdtime": 0,
        "tags": "inbound,reception_queue",
    }

    deliver(client, org, cdr, django_capture_on_commit_callbacks, event="cdr")

    call = Call.objects.get()
    assert (call.call_id, call.status) == (cdr["aleg_uuid"], "completed")
    assert call.data["end"] == "2025-03-01T10:01:35Z"
    [activity] = crm_server.activities_for_call(cdr["aleg_uuid"])
    assert (activity["duration"], activity["contact_id"], activity["user_id"]) == (
        87,
        "c-1",
        "u-1001",
    )


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_call_is_logged_by_a_real_worker_with_a_real_retry(
    client: Any, crm_server: Any, settings: Any
) -> None:
    from tests.integrations.pipeline.conftest import celery_broker, worker_env

    org = organization()
    installation = crm_installation(org, crm_server)
    mapped_user(installation)
    queue = f"test-calls-{org.pk}-{int(time.time())}"
    broker = redis_url_for_tests()
    env = worker_env(
        settings, queue, CALL_LOG_RETRY_BASE_SECONDS="0.2", CALL_LOG_RETRY_MAX_SECONDS="1"
    )
    crm_server.fail_next("/activities", 500, times=1, method="POST")
    with (
        celery_worker(broker_url=broker, queue=queue, extra_env=env) as worker,
        celery_broker(broker, queue=queue),
    ):
        for status in ("ringing", "answered", "completed"):
            response = post_event(client, org, call_event("c-500", status))
            assert response.status_code == 202, response.content
        wait_until(
            lambda: InboxEvent.objects.filter(state="done").count() == 3, "the events", worker
        )
        wait_until(
            lambda: (
                bool(crm_server.activities_for_call("c-500"))
                and crm_server.activities_for_call("c-500")[0].get("duration") == 285
            ),
            "the activity with the final data",
            worker,
        )
        wait_until(lambda: CallActivity.objects.filter(state="created").exists(), "the row", worker)

    assert len(crm_server.activities_for_call("c-500")) == 1
    posts = crm_server.requests_to("/activities", "POST")
    assert [r.status for r in posts] == [500, 201]  # retried by the task, delivered once
    assert "integrations.call_log" in worker.log()
    assert "retrying in" in worker.log()
    assert json.loads(json.dumps(CallActivity.objects.get().written))["sync"]["steps"] == ["lookup"]


@pytest.mark.django_db(transaction=True)
def test_demo_call_posts_a_call_through_a_running_portal(
    live_server: Any, crm_server: Any, recordings: Any
) -> None:
    from io import StringIO

    from django.core.management import call_command

    org = organization(slug="demo-org")
    installation = crm_installation(org, crm_server)
    mapped_user(installation)
    out = StringIO()

    call_command(
        "demo_call",
        org="demo-org",
        portal=live_server.url,
        call_id="demo-1",
        recording_url=f"{recordings.url}/rec/demo-1.wav",
        wait=10,
        stdout=out,
    )

    text = out.getvalue()
    assert text.count("→ 202") == 4
    assert "Example CRM: created act-" in text and "(recording uploaded)" in text
    [activity] = crm_server.activities_for_call("demo-1")
    assert activity["duration"] == 95
    assert len(activity["recordings"]) == 1
