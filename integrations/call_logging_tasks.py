"""Celery task of call logging: one call, one CRM installation.

`call_log_task(installation_id, call_id)` calls `call_logging.call_log_to_installation`, which
is idempotent and serialized per (installation, call), so running it twice — a duplicate
webhook, a redelivered message after a worker died (tasks are acknowledged late) — is harmless.

Retries live here and only for transient failures (connection errors, timeouts, 5xx, 429): the
task retries itself with exponential backoff and full jitter
(CALL_LOG_RETRY_BASE_SECONDS * 2^(n-1), capped at CALL_LOG_RETRY_MAX_SECONDS), never sooner than
the CRM's ``Retry-After``, up to CALL_LOG_MAX_RETRIES retries. Then the activity is marked
failed with the last error: the Calls page and the API show it with a Retry button
(`call_logging.call_activity_retry`), and every attempt is in the installation's delivery log.

Nothing is lost with a message: every activity whose CRM is behind the call has
`next_attempt_at` set (now, or when its retry is due) until a run catches up, and
`call_activity_sweep_task` (beat, every minute; `manage.py sweep`) re-enqueues the ones overdue
by INBOX_STUCK_AFTER_SECONDS — a lost message or a failed retry publish, or a worker killed
mid-task, without waiting for the broker's visibility timeout.

Without a broker (eager mode, the embedded default) the next attempt runs at once, without the
countdown.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from celery import shared_task
from django.conf import settings

from integrations.call_logging import (
    call_activity_give_up,
    call_activity_schedule,
    call_activity_sweep,
    call_log_to_installation,
)
from integrations.models import CallActivity

logger = logging.getLogger(__name__)


def call_log_retry_delay(retry: int, retry_after: float | None = None) -> float:
    """Seconds to wait before retry number `retry` (1 for the first): exponential backoff with
    full jitter, at least the third party's Retry-After."""
    base = float(settings.CALL_LOG_RETRY_BASE_SECONDS)
    cap = float(settings.CALL_LOG_RETRY_MAX_SECONDS)
    backoff = random.uniform(base / 2, min(cap, base * 2 ** max(0, retry - 1)))
    return max(backoff, float(retry_after or 0.0))


@shared_task(bind=True, name="integrations.call_log", ignore_result=True, max_retries=None)
def call_log_task(self: Any, installation_id: int, call_id: str) -> dict[str, Any]:
    """Log the call `call_id` (the PBX's id) to installation `installation_id`'s CRM."""
    try:
        outcome = call_log_to_installation(installation_id=installation_id, call_id=call_id)
    except Exception as exc:  # our bug: record it where an admin sees it, don't loop
        logger.exception(
            "call %s → installation %s: call logging crashed", call_id, installation_id
        )
        activity = CallActivity.objects.filter(
            installation_id=installation_id, call__call_id=call_id
        ).first()
        if activity is not None:
            call_activity_give_up(
                activity_id=activity.pk,
                message=f"Internal error while logging the call ({type(exc).__name__}: {exc}).",
            )
        return {"installation_id": installation_id, "call_id": call_id, "state": "error"}
    result = {
        "installation_id": installation_id,
        "call_id": call_id,
        "state": outcome.state,
        "retries": self.request.retries,
    }
    if not outcome.retry:
        return result
    retries_done = int(self.request.retries or 0)
    if retries_done >= int(settings.CALL_LOG_MAX_RETRIES):
        if outcome.activity_pk is not None:
            call_activity_give_up(
                activity_id=outcome.activity_pk,
                message=f"Gave up after {retries_done + 1} attempts: {outcome.error}",
            )
        return {**result, "state": CallActivity.State.FAILED}
    countdown = call_log_retry_delay(retries_done + 1, outcome.retry_after)
    if outcome.activity_pk is not None:
        # Due when the retry is: if its message is lost, the sweeper takes over then.
        call_activity_schedule(activity_pk=outcome.activity_pk, delay_seconds=countdown)
    logger.info(
        "call %s → installation %s: attempt %d failed (%s); retrying in %.1f s",
        call_id,
        installation_id,
        retries_done + 1,
        outcome.error,
        countdown,
    )
    if self.request.is_eager:
        # Without a broker there is nothing to wait on (and Celery's eager retry raises out of
        # the caller when eager exceptions propagate): run the next attempt now.
        return self.apply(args=[installation_id, call_id], retries=retries_done + 1).result
    raise self.retry(countdown=countdown)


@shared_task(name="integrations.call_activity_sweep", ignore_result=True)
def call_activity_sweep_task() -> int:
    """Re-enqueue call activities whose CRM is still behind the call long after their work was
    due: a lost message, a failed retry publish or a killed worker (beat: every minute)."""
    return len(call_activity_sweep())
