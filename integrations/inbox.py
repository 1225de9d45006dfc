"""The inbox: every accepted inbound event is a row first, processed afterwards.

Flow (DESIGN 2 and 5)::

    webhook view ──inbox_event_store()──▶ InboxEvent (received) ──on_commit──▶ inbox_process_task
                                                                                   │
                          inbox_event_process(): claim → run the registered handlers → done / failed
                                                                                   │
      inbox_sweep() (beat, every minute): rows stuck in received/processing → enqueued again

Guarantees:

* **Stored before answered.** `inbox_event_store` inserts the row inside a transaction; the
  processing task is enqueued with `transaction.on_commit`, and a broker that is down does not
  lose the event or fail the request: the enqueue error is logged and the row stays `received`
  for the sweeper.
* **Once per (source, organization, dedup key).** A duplicate insert returns the existing row
  with ``created=False`` and enqueues nothing.
* **At least once, never concurrently.** `inbox_event_process` claims a `received` row with
  ``SELECT … FOR UPDATE SKIP LOCKED`` (state → `processing`, attempts + 1), so two workers never
  run one event at the same time; a row whose worker died is put back to `received` by the
  sweeper after ``INBOX_STUCK_AFTER_SECONDS``. A handler may therefore run again for an event it
  already saw (a worker killed after the handler's writes, before the row was marked done):
  **handlers must be idempotent** (unique constraints, upserts, "already done?" checks).

The handler registry
--------------------
A handler is a function ``(event: InboxEvent) -> None`` registered for a (source, event type)::

    from integrations.inbox import inbox_handler

    @inbox_handler("pbx", "call")
    def call_log(event: InboxEvent) -> None:
        ...  # event.normalized holds the validated call; event.payload the body as received

Every handler registered for the event's (source, type) runs, in registration order. The module
holding handlers must be imported before events are processed: list it in the
``INBOX_HANDLER_MODULES`` setting (loaded lazily by `inbox_handlers`). An event with no
handler is marked `ignored`.

What a handler signals:

* returns normally → its part is done;
* raises `InboxRetryLater` (or an `IntegrationError` with ``permanent=False``: a timeout, a 5xx, a
  429) → the event goes back to `received` with ``next_attempt_at`` after a backoff (the
  error's ``retry_after`` when given), up to ``INBOX_MAX_ATTEMPTS`` attempts; every handler runs
  again then, which is why they must be idempotent;
* raises anything else → the event is marked `failed` with the message in ``last_error``
  (shown to admins; `inbox_event_replay` runs it again).

Handlers run outside any transaction; open your own ``transaction.atomic()`` where you need one.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from django.conf import settings
from django.core.files import File
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from integrations.engine.errors import IntegrationError
from integrations.models import InboxEvent, Installation
from tenants.models import Organization

logger = logging.getLogger(__name__)

InboxHandler = Callable[[InboxEvent], None]
HandlerT = TypeVar("HandlerT", bound=InboxHandler)

# Celery's default publish retry waits ~1 s per enqueue when the broker is down; a webhook must
# answer fast, and the sweeper recovers anything not enqueued.
PUBLISH_RETRY_POLICY: dict[str, float] = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.1,
    "interval_max": 0.1,
}
# Backoff of an event a handler asked to retry: base * 2**(attempt-1), capped, with jitter.
RETRY_BASE_SECONDS = 15.0
RETRY_MAX_SECONDS = 3600.0
DEDUP_KEY_MAX = 255
EVENT_TYPE_MAX = 50

_handlers: dict[tuple[str, str], list[InboxHandler]] = {}
_handler_modules_loaded = False


class InboxRetryLater(Exception):
    """Raised by a handler when the event should be processed again later (a transient failure).

    `delay_seconds` overrides the backoff (e.g. a third party's Retry-After).
    """

    def __init__(self, message: str, *, delay_seconds: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.delay_seconds = delay_seconds


# --- Registry -----------------------------------------------------------------------------------


def _handler_name(handler: Callable[..., Any]) -> str:
    return f"{handler.__module__}.{getattr(handler, '__qualname__', repr(handler))}"


def inbox_handler(source: str, event_type: str) -> Callable[[HandlerT], HandlerT]:
    """Register the decorated function as a handler of (`source`, `event_type`) events.

    Registering a function with the same module and name again replaces the earlier one (a
    re-imported module does not run its handlers twice). Returns the function unchanged, so
    one function may be decorated for several event types.
    """
    if source not in InboxEvent.Source.values:
        raise ValueError(f"unknown inbox source {source!r}; one of {InboxEvent.Source.values}")

    def register(handler: HandlerT) -> HandlerT:
        handlers = _handlers.setdefault((source, event_type), [])
        name = _handler_name(handler)
        for index, existing in enumerate(handlers):
            if _handler_name(existing) == name:
                handlers[index] = handler
                break
        else:
            handlers.append(handler)
        return handler

    return register


def inbox_handlers_load() -> None:
    """Import every module of the INBOX_HANDLER_MODULES setting (once per process)."""
    global _handler_modules_loaded
    if _handler_modules_loaded:
        return
    for module in getattr(settings, "INBOX_HANDLER_MODULES", []):
        importlib.import_module(module)
    _handler_modules_loaded = True


def inbox_handlers(source: str, event_type: str) -> list[InboxHandler]:
    """The handlers registered for (`source`, `event_type`), in registration order."""
    inbox_handlers_load()
    return list(_handlers.get((source, event_type), []))


# --- Store ---------------------------------------------------------------------------------------


def inbox_dedup_key(*parts: object) -> str:
    """A dedup key from `parts` joined by ':'; hashed when longer than the column allows."""
    key = ":".join("" if part is None else str(part) for part in parts)
    if len(key) > DEDUP_KEY_MAX:
        key = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return key


def inbox_event_store(
    *,
    source: str,
    event_type: str,
    dedup_key: str,
    organization: Organization | None = None,
    installation: Installation | None = None,
    body: str = "",
    payload: dict[str, Any] | None = None,
    normalized: dict[str, Any] | None = None,
    correlation_key: str = "",
    content_type: str = "",
    query: dict[str, Any] | None = None,
    headers: dict[str, Any] | None = None,
    file: File | None = None,
    file_name: str = "",
    state: str = InboxEvent.State.RECEIVED,
    last_error: str = "",
) -> tuple[InboxEvent, bool]:
    """Insert an inbox event, or find the one already stored under the same dedup key.

    Returns ``(event, created)``. On a duplicate (same source, organization and `dedup_key`)
    the existing row is returned with ``created=False``; nothing is written or enqueued, and a
    `file` given is not saved. A new `received` event is enqueued for processing when the
    surrounding transaction commits (`inbox_event_enqueue`, which never raises). `file` (a
    voicemail or fax body) is saved under MEDIA_ROOT with `file_name`; a temporary uploaded file
    is moved, not copied. Secrets must already be redacted from `body`, `query` and `headers`.
    """
    if len(dedup_key) > DEDUP_KEY_MAX:
        dedup_key = inbox_dedup_key(dedup_key)
    with transaction.atomic():
        try:
            with transaction.atomic():
                event = InboxEvent.objects.create(
                    source=source,
                    organization=organization,
                    installation=installation,
                    event_type=event_type[:EVENT_TYPE_MAX],
                    dedup_key=dedup_key,
                    correlation_key=correlation_key[:255],
                    body=body,
                    payload=payload or {},
                    normalized=normalized or {},
                    content_type=content_type[:200],
                    query=query or {},
                    headers=headers or {},
                    received_at=timezone.now(),
                    state=state,
                    last_error=last_error,
                    processed_at=timezone.now() if state == InboxEvent.State.IGNORED else None,
                )
        except IntegrityError:
            existing = (
                InboxEvent.objects.filter(source=source, dedup_key=dedup_key)
                .filter(
                    Q(organization=organization)
                    if organization is not None
                    else Q(organization__isnull=True)
                )
                .first()
            )
            if existing is None:  # not a dedup conflict: a real integrity problem
                raise
            return existing, False
        if file is not None:
            event.file.save(file_name or "body", file, save=False)
            event.save(update_fields=["file"])
        if state == InboxEvent.State.RECEIVED:
            transaction.on_commit(partial(inbox_event_enqueue, event_id=event.pk))
    return event, True


def _eager() -> bool:
    from portal.celery import app

    return bool(app.conf.task_always_eager)


def inbox_event_enqueue(*, event_id: int, countdown: float | None = None) -> bool:
    """Send `inbox_process_task(event_id)` to the broker; True when it was sent.

    Never raises: a broker that is down (or, without a broker, a task that failed in-process)
    is logged and the row stays `received` for `inbox_sweep`.
    """
    from integrations.pipeline_tasks import inbox_process_task

    try:
        inbox_process_task.apply_async(
            args=[event_id], countdown=countdown, retry=True, retry_policy=PUBLISH_RETRY_POLICY
        )
    except Exception as exc:
        logger.warning(
            "inbox event %s stored but not enqueued (%s: %s); the sweeper will pick it up",
            event_id,
            type(exc).__name__,
            exc,
        )
        return False
    return True


# --- Process -------------------------------------------------------------------------------------


def _retry_delay(attempt: int, requested: float | None) -> float:
    backoff = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** max(0, attempt - 1))
    backoff *= random.uniform(0.5, 1.0)
    return max(backoff, requested or 0.0)


def _finish(event: InboxEvent, claimed_at: datetime | None, **fields: Any) -> bool:
    """Record the outcome unless the sweeper handed the row to another worker meanwhile."""
    updated = InboxEvent.objects.filter(
        pk=event.pk, state=InboxEvent.State.PROCESSING, claimed_at=claimed_at
    ).update(**fields)
    for name, value in fields.items():
        setattr(event, name, value)
    return bool(updated)


def inbox_event_process(*, event_id: int) -> InboxEvent | None:
    """Claim the `received` event `event_id`, run its handlers and record the outcome.

    Returns the event, or None when there was nothing to do: it does not exist, it is not
    `received` (already done, or being processed by another worker), or a retry is not due yet.
    Outcomes: `done`; `ignored` (no handler registered); `received` again with
    ``next_attempt_at`` (a handler asked to retry, attempts left); `failed` with ``last_error``.
    Never raises for a handler's error.
    """
    now = timezone.now()
    with transaction.atomic():
        event = (
            InboxEvent.objects.select_for_update(skip_locked=True)
            .filter(pk=event_id, state=InboxEvent.State.RECEIVED)
            .first()
        )
        if event is None or (event.next_attempt_at and event.next_attempt_at > now):
            return None
        event.state = InboxEvent.State.PROCESSING
        event.attempts += 1
        event.claimed_at = now
        event.save(update_fields=["state", "attempts", "claimed_at"])
    claimed_at = event.claimed_at

    handlers = inbox_handlers(event.source, event.event_type)
    if not handlers:
        logger.info(
            "inbox event %s: no handler for %s/%s", event.pk, event.source, event.event_type
        )
        _finish(
            event,
            claimed_at,
            state=InboxEvent.State.IGNORED,
            last_error=f"No handler is registered for {event.source}/{event.event_type} events.",
            processed_at=timezone.now(),
        )
        return event

    errors: list[str] = []
    retry_messages: list[str] = []
    requested_delay: float | None = None
    for handler in handlers:
        name = getattr(handler, "__name__", "handler")
        try:
            handler(event)
        except InboxRetryLater as exc:
            retry_messages.append(f"{name}: {exc.message}")
            if exc.delay_seconds is not None:
                requested_delay = max(requested_delay or 0.0, exc.delay_seconds)
        except IntegrationError as exc:
            if exc.permanent:
                errors.append(f"{name}: {exc.message}")
            else:
                retry_messages.append(f"{name}: {exc.message}")
                if exc.retry_after is not None:
                    requested_delay = max(requested_delay or 0.0, exc.retry_after)
        except Exception as exc:
            logger.exception("inbox event %s: handler %s failed", event.pk, name)
            errors.append(f"{name}: {type(exc).__name__}: {exc}")

    finished_at = timezone.now()
    if errors:
        _finish(
            event,
            claimed_at,
            state=InboxEvent.State.FAILED,
            last_error="; ".join(errors + retry_messages)[:4000],
            processed_at=finished_at,
            next_attempt_at=None,
        )
    elif retry_messages:
        message = "; ".join(retry_messages)[:4000]
        if event.attempts >= settings.INBOX_MAX_ATTEMPTS:
            _finish(
                event,
                claimed_at,
                state=InboxEvent.State.FAILED,
                last_error=f"Gave up after {event.attempts} attempts: {message}"[:4000],
                processed_at=finished_at,
                next_attempt_at=None,
            )
        else:
            delay = _retry_delay(event.attempts, requested_delay)
            if (
                _finish(
                    event,
                    claimed_at,
                    state=InboxEvent.State.RECEIVED,
                    last_error=f"Attempt {event.attempts} will be retried: {message}"[:4000],
                    next_attempt_at=finished_at + timedelta(seconds=delay),
                )
                and not _eager()
            ):
                # Without a broker a countdown is not honoured; the sweeper retries instead.
                inbox_event_enqueue(event_id=event.pk, countdown=delay)
    else:
        _finish(
            event,
            claimed_at,
            state=InboxEvent.State.DONE,
            last_error="",
            processed_at=finished_at,
            next_attempt_at=None,
        )
    return event


def inbox_event_replay(*, event: InboxEvent) -> InboxEvent:
    """Process a `failed` or `ignored` event again (an admin's "re-run"): back to `received`
    and enqueued when the transaction commits. Events in other states are returned unchanged."""
    replayable = (InboxEvent.State.FAILED, InboxEvent.State.IGNORED)
    with transaction.atomic():
        updated = InboxEvent.objects.filter(pk=event.pk, state__in=replayable).update(
            state=InboxEvent.State.RECEIVED, next_attempt_at=None, processed_at=None
        )
        if updated:
            transaction.on_commit(partial(inbox_event_enqueue, event_id=event.pk))
    event.refresh_from_db()
    return event


# --- Sweep ---------------------------------------------------------------------------------------


def inbox_sweep(*, stuck_after_seconds: float | None = None, limit: int = 1000) -> list[int]:
    """Enqueue again the events a lost broker message or a killed worker left behind.

    * `processing` rows claimed more than `stuck_after_seconds` ago (their worker died) go back
      to `received` (the attempt stays counted);
    * `received` rows stored more than `stuck_after_seconds` ago and never retried, and rows
      whose retry is due, are enqueued.

    `stuck_after_seconds` defaults to the INBOX_STUCK_AFTER_SECONDS setting. Returns the ids
    enqueued (at most `limit`, oldest first). Enqueueing twice is harmless: a claim is exclusive
    and only a `received` row can be claimed.
    """
    if stuck_after_seconds is None:
        stuck_after_seconds = settings.INBOX_STUCK_AFTER_SECONDS
    now = timezone.now()
    cutoff = now - timedelta(seconds=stuck_after_seconds)
    stuck = list(
        InboxEvent.objects.filter(
            state=InboxEvent.State.PROCESSING, claimed_at__lt=cutoff
        ).values_list("pk", flat=True)[:limit]
    )
    if stuck:
        InboxEvent.objects.filter(
            pk__in=stuck, state=InboxEvent.State.PROCESSING, claimed_at__lt=cutoff
        ).update(
            state=InboxEvent.State.RECEIVED,
            next_attempt_at=None,
            last_error="The worker processing this event stopped; processing it again.",
        )
        logger.warning("inbox sweep: %d event(s) stuck in processing: %s", len(stuck), stuck)
    due = list(
        InboxEvent.objects.filter(state=InboxEvent.State.RECEIVED)
        .filter(
            Q(next_attempt_at__isnull=True, received_at__lt=cutoff)
            # Just put back from `processing` (whatever their received_at says).
            | Q(next_attempt_at__isnull=True, pk__in=stuck)
            | Q(next_attempt_at__lte=now)
        )
        .order_by("received_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    for event_id in due:
        inbox_event_enqueue(event_id=event_id)
    if due:
        logger.info("inbox sweep: enqueued %d event(s)", len(due))
    return due
