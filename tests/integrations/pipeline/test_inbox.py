"""The inbox: store once per dedup key, claim and run the registered handlers, record the
outcome (done, ignored, failed, retried later), sweep what a lost message or a dead worker
left behind, and never lose an event when the broker is down."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from integrations import inbox
from integrations.engine.errors import IntegrationError
from integrations.inbox import (
    InboxRetryLater,
    inbox_event_enqueue,
    inbox_event_process,
    inbox_event_replay,
    inbox_event_store,
    inbox_handler,
    inbox_handlers,
    inbox_sweep,
)
from integrations.models import InboxEvent
from tests.integrations.pipeline.conftest import celery_broker, post_hook

pytestmark = pytest.mark.django_db


@pytest.fixture
def registry() -> Any:
    """Handlers registered by a test are forgotten after it."""
    inbox.inbox_handlers_load()
    saved = {key: list(handlers) for key, handlers in inbox._handlers.items()}
    calls: list[tuple[str, int]] = []
    yield calls
    inbox._handlers.clear()
    inbox._handlers.update(saved)


def _store(event_type: str, dedup_key: str = "k1", org: Any = None) -> InboxEvent:
    event, created = inbox_event_store(
        source="pbx", event_type=event_type, dedup_key=dedup_key, organization=org
    )
    assert created
    return event


def test_a_registered_handler_runs_and_the_event_is_done(registry: list, org: Any) -> None:
    @inbox_handler("pbx", "test_ok")
    def record(event: InboxEvent) -> None:
        registry.append(("record", event.pk))

    event = _store("test_ok", org=org)

    processed = inbox_event_process(event_id=event.pk)

    assert processed is not None
    event.refresh_from_db()
    assert (event.state, event.attempts, event.last_error) == ("done", 1, "")
    assert event.processed_at is not None
    assert registry == [("record", event.pk)]
    # Done is final: processing it again does nothing.
    assert inbox_event_process(event_id=event.pk) is None
    assert registry == [("record", event.pk)]


def test_every_handler_of_the_type_runs_in_registration_order(registry: list) -> None:
    @inbox_handler("pbx", "test_two")
    def first(event: InboxEvent) -> None:
        registry.append(("first", event.pk))

    @inbox_handler("pbx", "test_two")
    def second(event: InboxEvent) -> None:
        registry.append(("second", event.pk))

    # Registering the same function again (a re-imported module) replaces it.
    inbox_handler("pbx", "test_two")(first)
    event = _store("test_two")

    inbox_event_process(event_id=event.pk)

    assert [name for name, _ in registry] == ["first", "second"]
    assert [h.__name__ for h in inbox_handlers("pbx", "test_two")] == ["first", "second"]


def test_an_event_without_handler_is_ignored(registry: list) -> None:
    event = _store("nobody_handles_this")

    inbox_event_process(event_id=event.pk)

    event.refresh_from_db()
    assert event.state == "ignored"
    assert "No handler is registered for pbx/nobody_handles_this" in event.last_error


def test_a_failing_handler_marks_the_event_failed_and_others_still_run(registry: list) -> None:
    @inbox_handler("pbx", "test_fail")
    def broken(event: InboxEvent) -> None:
        raise ValueError("the CRM field 'Subject' is required")

    @inbox_handler("pbx", "test_fail")
    def fine(event: InboxEvent) -> None:
        registry.append(("fine", event.pk))

    event = _store("test_fail")

    inbox_event_process(event_id=event.pk)

    event.refresh_from_db()
    assert event.state == "failed"
    assert event.last_error == "broken: ValueError: the CRM field 'Subject' is required"
    assert registry == [("fine", event.pk)]


def test_a_failed_event_can_be_replayed(
    registry: list, django_capture_on_commit_callbacks: Any
) -> None:
    outcomes = [ValueError("down"), None]

    @inbox_handler("pbx", "test_replay")
    def flaky(event: InboxEvent) -> None:
        outcome = outcomes.pop(0)
        if outcome:
            raise outcome

    event = _store("test_replay")
    inbox_event_process(event_id=event.pk)
    assert InboxEvent.objects.get(pk=event.pk).state == "failed"

    with django_capture_on_commit_callbacks(execute=True):
        inbox_event_replay(event=event)

    event.refresh_from_db()
    assert (event.state, event.attempts, event.last_error) == ("done", 2, "")


def test_a_handler_asking_to_retry_puts_the_event_back_with_backoff(
    registry: list, settings: Any
) -> None:
    settings.INBOX_MAX_ATTEMPTS = 3

    @inbox_handler("pbx", "test_retry")
    def busy(event: InboxEvent) -> None:
        raise InboxRetryLater("CRM is busy", delay_seconds=90)

    event = _store("test_retry")
    before = timezone.now()

    inbox_event_process(event_id=event.pk)

    event.refresh_from_db()
    assert event.state == "received"
    assert event.next_attempt_at >= before + timedelta(seconds=90)
    assert event.last_error == "Attempt 1 will be retried: busy: CRM is busy"
    # Not due yet: a duplicate message does nothing.
    assert inbox_event_process(event_id=event.pk) is None
    for _attempt in (2, 3):
        InboxEvent.objects.filter(pk=event.pk).update(next_attempt_at=timezone.now())
        inbox_event_process(event_id=event.pk)
    event.refresh_from_db()
    assert (event.state, event.attempts) == ("failed", 3)
    assert event.last_error.startswith("Gave up after 3 attempts: busy: CRM is busy")


def test_a_transient_integration_error_is_retried_after_its_retry_after(registry: list) -> None:
    @inbox_handler("pbx", "test_429")
    def limited(event: InboxEvent) -> None:
        raise IntegrationError("429 from CRM: rate limited", permanent=False, retry_after=600)

    @inbox_handler("pbx", "test_401")
    def refused(event: InboxEvent) -> None:
        raise IntegrationError("401 from CRM: reconnect", permanent=True)

    limited_event = _store("test_429", "a")
    refused_event = _store("test_401", "b")

    inbox_event_process(event_id=limited_event.pk)
    inbox_event_process(event_id=refused_event.pk)

    limited_event.refresh_from_db()
    refused_event.refresh_from_db()
    assert limited_event.state == "received"
    assert limited_event.next_attempt_at >= timezone.now() + timedelta(seconds=590)
    assert (refused_event.state, refused_event.last_error) == (
        "failed",
        "refused: 401 from CRM: reconnect",
    )


def test_an_event_being_processed_is_not_claimed_twice(registry: list) -> None:
    event = _store("test_ok")
    InboxEvent.objects.filter(pk=event.pk).update(state="processing", claimed_at=timezone.now())

    assert inbox_event_process(event_id=event.pk) is None
    assert InboxEvent.objects.get(pk=event.pk).attempts == 0


def test_the_sweeper_recovers_events_stuck_in_processing_or_received(registry: list) -> None:
    @inbox_handler("pbx", "test_sweep")
    def record(event: InboxEvent) -> None:
        registry.append(("record", event.pk))

    long_ago = timezone.now() - timedelta(minutes=10)
    dead_worker = _store("test_sweep", "dead")
    InboxEvent.objects.filter(pk=dead_worker.pk).update(
        state="processing", claimed_at=long_ago, attempts=1
    )
    lost_message = _store("test_sweep", "lost")
    InboxEvent.objects.filter(pk=lost_message.pk).update(received_at=long_ago)
    fresh = _store("test_sweep", "fresh")
    busy = _store("test_sweep", "busy")
    InboxEvent.objects.filter(pk=busy.pk).update(state="processing", claimed_at=timezone.now())
    not_due = _store("test_sweep", "later")
    InboxEvent.objects.filter(pk=not_due.pk).update(
        received_at=long_ago, next_attempt_at=timezone.now() + timedelta(hours=1)
    )

    # Without a broker (eager), an enqueued event is processed at once.
    swept = inbox_sweep(stuck_after_seconds=300)

    assert {dead_worker.pk, lost_message.pk} <= set(swept)
    assert not {fresh.pk, busy.pk, not_due.pk} & set(swept)
    states = dict(InboxEvent.objects.values_list("pk", "state"))
    assert states[dead_worker.pk] == "done"
    assert InboxEvent.objects.get(pk=dead_worker.pk).attempts == 2
    assert states[lost_message.pk] == "done"
    assert states[fresh.pk] == "received"
    assert states[busy.pk] == "processing"
    assert states[not_due.pk] == "received"


def test_storing_a_duplicate_returns_the_first_row_and_enqueues_nothing(
    org: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        first, created = inbox_event_store(
            source="pbx", event_type="cdr", dedup_key="cdr:1", organization=org
        )
        again, created_again = inbox_event_store(
            source="pbx", event_type="cdr", dedup_key="cdr:1", organization=org
        )
        unowned, _ = inbox_event_store(source="sms", event_type="message", dedup_key="m:1")
        unowned_again, unowned_created = inbox_event_store(
            source="sms", event_type="message", dedup_key="m:1"
        )

    assert (created, created_again, unowned_created) == (True, False, False)
    assert again.pk == first.pk and unowned_again.pk == unowned.pk
    assert len(callbacks) == 2


def test_a_broker_that_is_down_loses_nothing_and_fails_no_webhook(
    client: Any, org: Any, free_port: int, django_capture_on_commit_callbacks: Any, caplog: Any
) -> None:
    with celery_broker(f"redis://127.0.0.1:{free_port}/0"):
        started = time.monotonic()
        assert inbox_event_enqueue(event_id=123456) is False
        assert time.monotonic() - started < 5
        with django_capture_on_commit_callbacks(execute=True):
            response = post_hook(
                client,
                org,
                "call",
                {
                    "call_id": "c1",
                    "direction": "inbound",
                    "status": "ringing",
                    "caller_number": "+14155550100",
                    "called_number": "+18185559876",
                },
            )

    assert response.status_code == 202
    assert InboxEvent.objects.get().state == "received"
    assert "the sweeper will pick it up" in caplog.text
