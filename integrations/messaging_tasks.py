"""Celery tasks and inbox handlers of SMS messaging and CRM click-to-call.

* `message_send_task(message_id)` — one attempt at sending a queued message
  (`messaging.message_deliver`). A transient failure (timeout, 5xx, 429) is tried again with
  exponential backoff and jitter (a `Retry-After` is honoured) up to MESSAGE_SEND_MAX_ATTEMPTS;
  the row is the state (`Message.attempts`, `next_attempt_at`): the task re-enqueues itself
  with a countdown, and `message_sweep` re-enqueues a retry whose message was lost once it is
  due, never before. Without a broker (eager mode) a countdown cannot be honoured: the first
  attempt is the last and a transient failure marks the message failed with its reason.
* `message_crm_log_task(message_id)` — the CRM logs of a sent message; `Message.crm_log_due_at`
  stays set until they are done (or failed for good), and `message_crm_log_sweep` re-enqueues
  the overdue ones.
* Inbox handlers (registered on import; `IntegrationsConfig.ready` imports this module):
  ``sms/message`` and ``sms/mms`` store the inbound message, log it to the CRM and forward
  it to `sms` callbacks; ``sms/status`` applies a delivery status and forwards it to
  `message_status` callbacks; ``crm/<action>`` turns a click-to-call or call-control request
  into a `clicktocall` callback to the organization's PBX.

Handlers are idempotent: the inbound message is keyed by its inbox event, callback
deliveries are unique per (subscription, event), status changes only move forward.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.conf import settings

from integrations import messaging
from integrations.engine.errors import IntegrationError
from integrations.inbox import inbox_handler
from integrations.models import InboxEvent, Message
from tenants.models import SmsNumber

logger = logging.getLogger(__name__)

CRM_ACTIONS = ("clicktocall", "answer", "hangup", "mute", "unmute", "hold", "unhold", "keypress")


def _eager() -> bool:
    from portal.celery import app

    return bool(app.conf.task_always_eager)


message_send_backoff = messaging.message_send_backoff


@shared_task(name="integrations.message_send", ignore_result=True)
def message_send_task(message_id: int, attempt: int | None = None) -> dict[str, Any]:
    """Send the queued message `message_id` (its attempts are counted on the row; `attempt`
    is accepted for messages enqueued by an older version and ignored)."""
    outcome = messaging.message_deliver(message_id=message_id, final_attempt=_eager())
    if outcome is None:
        return {"message_id": message_id, "state": "skipped"}
    message = outcome.message
    if outcome.retry:
        delay = outcome.delay or 0.0
        messaging.message_send_enqueue(message_id=message_id, countdown=delay)
        return {
            "message_id": message_id,
            "state": "retrying",
            "attempt": message.attempts,
            "delay": delay,
        }
    if message.status != Message.Status.QUEUED:
        try:
            messaging.message_status_forward(message=message)
        except Exception:  # a callback problem must not undo a send
            logger.exception("message %s: status callback dispatch failed", message_id)
    if message.status in (Message.Status.SENT, Message.Status.DELIVERED):
        messaging.message_crm_log_enqueue(message_id=message_id)
    return {"message_id": message_id, "state": message.status, "attempt": message.attempts}


@shared_task(name="integrations.message_crm_log", bind=True, ignore_result=True)
def message_crm_log_task(self: Any, message_id: int) -> list[str]:
    """Log the sent message `message_id` to the organization's CRMs (those whose spec has
    CreateMessageLog). Transient failures retry with backoff; each CRM gets one log."""
    message = Message.objects.filter(pk=message_id).first()
    if message is None:
        return []
    try:
        created = messaging.message_crm_log(message=message)
    except IntegrationError as exc:
        attempt = self.request.retries + 1
        if exc.permanent or _eager() or attempt >= int(settings.MESSAGE_SEND_MAX_ATTEMPTS):
            logger.warning("message %s: CRM message log failed: %s", message_id, exc.message)
            messaging.message_crm_log_due(message_id=message_id)
            return []
        countdown = message_send_backoff(attempt, exc.retry_after)
        # Due when the retry is: if its message is lost, the sweeper takes over then.
        messaging.message_crm_log_due(message_id=message_id, delay_seconds=countdown)
        raise self.retry(countdown=countdown, exc=exc) from exc
    messaging.message_crm_log_due(message_id=message_id)
    return created


@shared_task(name="integrations.message_sweep", ignore_result=True)
def message_sweep_task() -> int:
    """Re-enqueue outbound messages whose attempt is due and CRM logs left behind (beat:
    every minute)."""
    return len(messaging.message_sweep()) + len(messaging.message_crm_log_sweep())


# --- Inbox handlers: SMS provider -------------------------------------------------------------


def _inbound_message(event: InboxEvent) -> None:
    data = event.normalized or {}
    sms_number = (
        SmsNumber.objects.select_related("organization")
        .filter(pk=data.get("sms_number_id"))
        .first()
    )
    if sms_number is None:
        logger.warning("inbox event %s: SMS number %s is gone", event.pk, data.get("sms_number_id"))
        return
    media = data.get("media_urls") or []
    message, created = messaging.message_inbound_store(
        sms_number=sms_number,
        from_number=str(data.get("from") or ""),
        content=str(data.get("content") or ""),
        media_urls=[str(u) for u in media],
        messageid=str(data.get("messageid") or ""),
        event=event,
    )
    # Callbacks first: their deliveries are unique per event, so a re-run adds nothing. The CRM
    # log may raise a transient error, which sends the whole event round again.
    messaging.message_forward(message=message, event=event)
    if created or event.attempts > 1:
        messaging.message_crm_log(message=message)


@inbox_handler("sms", "message")
def sms_message_received(event: InboxEvent) -> None:
    """An inbound SMS: store, forward to `sms` callbacks, log to the CRM."""
    _inbound_message(event)


@inbox_handler("sms", "mms")
def sms_mms_received(event: InboxEvent) -> None:
    """An inbound MMS (a file URL and text): as an SMS, with its media URLs."""
    _inbound_message(event)


@inbox_handler("sms", "status")
def sms_status_received(event: InboxEvent) -> None:
    """A delivery status: move the message forward, tell `message_status` callbacks."""
    data = event.normalized or {}
    message = (
        Message.objects.select_related("organization").filter(pk=data.get("message_id")).first()
    )
    if message is None:
        return
    status = str(data.get("status") or "")
    changed = messaging.message_status_apply(
        message=message, status=status, error=str(data.get("error") or "")
    )
    # Also when nothing changed but the message has this status: a run after a crash between
    # the change and the forward must still forward (deliveries are unique per event).
    stored = Message.objects.filter(pk=message.pk).values_list("status", flat=True).first()
    if changed or (status and stored == status):
        message.refresh_from_db()
        messaging.message_status_forward(message=message, event=event)


# --- Inbox handlers: CRM click-to-call and call control ------------------------------------------


def crm_action_received(event: InboxEvent) -> None:
    """Send the PBX a `clicktocall` callback for a click-to-call or call-control request."""
    from integrations.callbacks import callbacks_dispatch

    data = event.normalized or {}
    payload = dict(data.get("payload") or {})
    tokens = {k: v for k, v in (data.get("tokens") or {}).items() if v not in (None, "")}
    if event.organization is None:
        return
    callbacks_dispatch(
        organization=event.organization,
        callback_type="clicktocall",
        payload=payload,
        tokens=tokens,
        source_event=event,
    )


for _action in CRM_ACTIONS:
    inbox_handler("crm", _action)(crm_action_received)
del _action
