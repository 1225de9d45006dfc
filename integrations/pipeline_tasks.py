"""Celery tasks of the event pipeline. Each takes an id (or nothing), calls a service and
returns a small summary. They are registered in workers through the CELERY_IMPORTS setting.

Retries are not Celery retries: the row is the state. A task whose work must happen again
later records ``next_attempt_at`` on its row and enqueues itself with a countdown; the
sweepers (run every minute by beat) re-enqueue whatever a lost message or a killed worker left
behind. Tasks are acknowledged late (CELERY_TASK_ACKS_LATE), and running one twice is harmless.
"""

from __future__ import annotations

from celery import shared_task

from integrations.callbacks import callback_deliver, callback_sweep
from integrations.inbox import inbox_event_process, inbox_sweep


@shared_task(name="integrations.inbox_process", ignore_result=True)
def inbox_process_task(event_id: int) -> dict[str, object]:
    """Process the inbox event `event_id` (claim, run its handlers, record the outcome)."""
    event = inbox_event_process(event_id=event_id)
    if event is None:
        return {"event_id": event_id, "state": "skipped"}
    return {"event_id": event.pk, "state": event.state, "attempts": event.attempts}


@shared_task(name="integrations.inbox_sweep", ignore_result=True)
def inbox_sweep_task() -> int:
    """Re-enqueue inbox events stuck past INBOX_STUCK_AFTER_SECONDS (beat: every minute)."""
    return len(inbox_sweep())


@shared_task(name="integrations.callback_deliver", ignore_result=True)
def callback_deliver_task(delivery_id: int) -> dict[str, object]:
    """Make one attempt at the callback delivery `delivery_id`."""
    delivery = callback_deliver(delivery_id=delivery_id)
    if delivery is None:
        return {"delivery_id": delivery_id, "state": "skipped"}
    return {"delivery_id": delivery.pk, "state": delivery.state, "attempts": delivery.attempts}


@shared_task(name="integrations.callback_sweep", ignore_result=True)
def callback_sweep_task() -> int:
    """Re-enqueue callback deliveries that are due or were left by a dead worker."""
    return len(callback_sweep())
