"""Celery tasks and inbox handlers of SMS messaging and CRM click-to-call.

* `message_send_task(message_id)` — one attempt at sending a queued message
  (`messaging.message_deliver`). A transient failure (timeout, 5xx, 429) is tried again with
  exponential backoff and jitter (a `Retry-After` is honoured) up to MESSAGE_SEND_MAX_ATTEMPTS;
  the task re-enqueues itself with a countdown rather than using Celery retries, so the row
  stays the state. Without a broker (eager mode) a countdown cannot be honoured: the first
  attempt is the last and a transient failure marks the message failed with its reason.
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
import random
from typing import Any

from celery import shared_task
from django.conf import settings
from kombu.exceptions import OperationalError as KombuOperationalError

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


def message_send_backoff(attempt: int, retry_after: float | None = None) -> float:
    """Seconds before attempt `attempt + 1`: base * 2**(attempt-1), capped, full jitter, at
    least the provider's Retry-After."""
    base = float(settings.MESSAGE_SEND_RETRY_BASE_SECONDS)
    cap = float(settings.MESSAGE_SEND_RETRY_MAX_SECONDS)
    delay = random.uniform(0, min(cap, base * 2 ** max(0, attempt - 1)))
    return max(delay, base / 2, retry_after or 0.0)


@shared_task(name="integrations.message_send", ignore_result=True)
def message_send_task(message_id: int, attempt: int = 1) -> dict[str, Any]:
    """Send the queued message `message_id` (attempt `attempt`)."""
    final = _eager() or attempt >= int(settings.MESSAGE_SEND_MAX_ATTEMPTS)
    outcome = messaging.message_deliver(message_id=message_id, final_attempt=final)
    if outcome is None:
        return {"message_id": message_id, "state": "skipped"}
    message = outcome.message
    if outcome.retry:
        delay = message_send_backoff(attempt, outcome.retry_after)
        messaging.message_send_enqueue(message_id=message_id, attempt=attempt + 1, countdown=delay)
        return {"message_id": message_id, "state": "retrying", "attempt": attempt, "delay": delay}
    if message.status != Message.Status.QUEUED:
        try:
            messaging.message_status_forward(message=message)
        except Exception:  # a callback problem must not undo a send
            logger.exception("message %s: status callback dispatch failed", message_id)
    if message.status in (Message.Status.SENT, Message.Status.DELIVERED):
        try:
            message_crm_log_task.delay(message_id)
        except (OSError, KombuOperationalError) as exc:
            logger.warning("message %s sent but not logged to the CRM: %s", message_id, exc)
    return {"message_id": message_id, "state": message.status, "attempt": attempt}


@shared_task(name="integrations.message_crm_log", bind=True, ignore_result=True)
def message_crm_log_task(self: Any, message_id: int) -> list[str]:
    """Log the sent message `message_id` to the organization's CRMs (those whose spec has
    CreateMessageLog). Transient failures retry with backoff; each CRM gets one log."""
    message = Message.objects.filter(pk=message_id).first()
    if message is None:
        return []
    try:
        return messaging.message_crm_log(message=message)
    except IntegrationError as exc:
        attempt = self.request.retries + 1
        if exc.permanent or _eager() or attempt >= int(settings.MESSAGE_SEND_MAX_ATTEMPTS):
            logger.warning("message %s: CRM message log failed: %s", message_id, exc.message)
            return []
        raise self.retry(countdown=message_send_backoff(attempt, exc.retry_after), exc=exc) from exc


@shared_task(name="integrations.message_sweep", ignore_result=True)
def message_sweep_task() -> int:
    """Re-enqueue outbound messages left `queued` (beat: every minute)."""
    return len(messaging.message_sweep())


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
    changed = messaging.message_status_apply(
        message=message, status=str(data.get("status") or ""), error=str(data.get("error") or "")
    )
    if changed:
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
