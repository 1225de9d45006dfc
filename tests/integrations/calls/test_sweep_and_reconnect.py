"""Nothing is lost between the inbox and the CRM: a call whose logging messages were lost is
logged once by the sweeper; calls that arrive while the integration needs reconnecting are
kept and logged once it is connected again; a run that waited for the call's lock logs the
call as stored when it got the lock."""

from __future__ import annotations

import io
import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from integrations.call_logging import (
    call_activity_sweep,
    call_event_apply,
    call_lock,
    call_log_to_installation,
)
from integrations.inbox import inbox_event_process
from integrations.models import Call, CallActivity, InboxEvent, Installation
from integrations.services import installation_needs_reconnect, installation_test
from tests.integrations.calls.support import (
    call_event,
    crm_installation,
    deliver,
    mapped_user,
    organization,
    post_event,
)
from tests.integrations.pipeline.conftest import celery_broker
from tests.support.processes import redis_url_for_tests, require_redis


@pytest.fixture
def org(db: Any) -> Any:
    return organization()


@pytest.fixture
def installation(org: Any, crm_server: Any) -> Any:
    installation = crm_installation(org, crm_server)
    mapped_user(installation)
    return installation


def _sweep(**options: Any) -> str:
    out = io.StringIO()
    call_command("sweep", stdout=out, **options)
    return out.getvalue()


@pytest.mark.django_db
def test_a_call_whose_logging_messages_were_lost_is_logged_once_by_the_sweeper(
    client: Any,
    org: Any,
    installation: Any,
    crm_server: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    url = redis_url_for_tests()
    require_redis(url)
    queue = f"test-lost-{uuid.uuid4().hex[:10]}"
    # The webhooks are stored (their inbox tasks not run here) ...
    with django_capture_on_commit_callbacks(execute=False):
        for status in ("ringing", "answered", "completed"):
            assert post_event(client, org, call_event("c-700", status)).status_code == 202
    # ... and processed with a real broker that nobody consumes: the handlers publish the
    # call-logging tasks, which are then lost.
    with celery_broker(url, queue=queue):
        for event in InboxEvent.objects.order_by("pk"):
            inbox_event_process(event_id=event.pk)
    broker = redis.Redis.from_url(url)
    assert broker.llen(queue) == 3
    broker.delete(queue)

    assert set(InboxEvent.objects.values_list("state", flat=True)) == {"done"}
    activity = CallActivity.objects.get()
    assert activity.state == "pending" and activity.next_attempt_at is not None
    assert crm_server.requests == []

    # Not overdue yet: a task still in flight is not duplicated.
    assert "0 call activity(ies)" in _sweep()
    assert crm_server.requests == []

    assert "1 call activity(ies)" in _sweep(stuck_after=0)
    assert "0 call activity(ies)" in _sweep(stuck_after=0)

    [logged] = crm_server.activities_for_call("c-700")
    assert (logged["duration"], logged["end"]) == (285, "2025-03-01T10:04:51Z")
    assert "completed" in logged["notes"]
    assert len(crm_server.requests_to("/activities", "POST")) == 1
    activity.refresh_from_db()
    assert (activity.state, activity.activity_id) == ("created", logged["id"])
    assert activity.next_attempt_at is None


@pytest.mark.django_db
def test_a_retry_whose_message_is_lost_is_swept_when_due_not_before(
    org: Any, installation: Any, crm_server: Any
) -> None:
    call = call_event_apply(organization=org, event=call_event("c-701", "completed"))
    crm_server.fail_next("/activities", 503, method="POST")
    outcome = call_log_to_installation(installation_id=installation.pk, call_id="c-701")
    assert outcome.retry
    # The task scheduled its retry in 10 minutes; that message is lost.
    from integrations.call_logging import call_activity_schedule

    call_activity_schedule(activity_pk=outcome.activity_pk, delay_seconds=600)

    assert call_activity_sweep(stuck_after_seconds=0) == []
    assert crm_server.activities_for_call("c-701") == []

    CallActivity.objects.filter(pk=outcome.activity_pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )
    assert call_activity_sweep(stuck_after_seconds=0) == [outcome.activity_pk]
    assert len(crm_server.activities_for_call(call.call_id)) == 1
    assert CallActivity.objects.get().state == "created"


@pytest.mark.django_db
def test_calls_arriving_while_the_integration_needs_reconnecting_are_logged_after_it(
    client: Any,
    org: Any,
    installation: Any,
    crm_server: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    installation_needs_reconnect(installation=installation, message="The refresh was refused.")
    assert installation.notices.filter(resolved_at__isnull=True).count() == 1

    deliver(client, org, call_event("c-710", "completed"), django_capture_on_commit_callbacks)
    deliver(client, org, call_event("c-711", "ringing"), django_capture_on_commit_callbacks)

    assert crm_server.requests == []
    activities = CallActivity.objects.order_by("call__call_id")
    assert [a.state for a in activities] == ["failed", "failed"]
    assert all("needs reconnecting" in a.last_error for a in activities)
    # The Calls page shows them as failed, with the reason.
    installation.refresh_from_db()

    # The CRM takes the credentials again: the admin's connection test passes.
    with django_capture_on_commit_callbacks(execute=True):
        outcome = installation_test(installation=installation)
    assert outcome.ok, outcome.error
    installation.refresh_from_db()
    assert installation.status == Installation.Status.ACTIVE
    assert installation.notices.filter(resolved_at__isnull=True).count() == 0

    [logged] = crm_server.activities_for_call("c-710")
    assert logged["duration"] == 285
    assert crm_server.activities_for_call("c-711") == []  # still ringing: looked up only
    rows = {a.call.call_id: a for a in CallActivity.objects.select_related("call")}
    assert (rows["c-710"].state, rows["c-710"].last_error) == ("created", "")
    assert (rows["c-711"].state, rows["c-711"].last_error) == ("pending", "")
    assert not any(a.waiting_for_reconnect for a in rows.values())

    # A later event of the ringing call is logged as usual, once.
    deliver(client, org, call_event("c-711", "completed"), django_capture_on_commit_callbacks)
    assert len(crm_server.activities_for_call("c-711")) == 1
    assert len(crm_server.requests_to("/activities", "POST")) == 2


def _lock_waiters() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        return int(cursor.fetchone()[0])


@pytest.mark.django_db(transaction=True)
def test_a_run_that_waited_for_the_lock_logs_the_call_as_stored_meanwhile(
    crm_server: Any,
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the lock is a PostgreSQL advisory lock")
    org = organization()
    installation = crm_installation(org, crm_server)
    mapped_user(installation)
    call = call_event_apply(organization=org, event=call_event("c-720", "answered"))
    outcomes: list[Any] = []

    def run() -> None:
        try:
            outcomes.append(
                call_log_to_installation(installation_id=installation.pk, call_id="c-720")
            )
        finally:
            from django.db import connection as thread_connection

            thread_connection.close()

    with call_lock(installation.pk, call.pk):
        worker = threading.Thread(target=run)
        worker.start()
        deadline = time.monotonic() + 10
        while _lock_waiters() == 0:  # the run read the call and waits for the lock
            assert time.monotonic() < deadline, "the run never waited for the lock"
            time.sleep(0.02)
        call_event_apply(organization=org, event=call_event("c-720", "completed"))
    worker.join(timeout=30)

    assert outcomes and outcomes[0].state == "created"
    [logged] = crm_server.activities_for_call("c-720")
    assert logged["duration"] == 285 and "completed" in logged["notes"]
    assert len(crm_server.requests_to("/activities", "PATCH")) == 0
    assert Call.objects.get().status == "completed"
