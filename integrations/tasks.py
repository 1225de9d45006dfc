"""Celery tasks of integrations. Each takes ids, calls a service and returns a small summary;
they are enqueued with `transaction.on_commit` by the services that create their rows.

No task-level retries here: the HTTP door already retries transient failures (5xx, timeouts,
429) with backoff inside one call, and a fetch that still fails is recorded on its
`UserFetch` for the admin to see and start again.
"""

from __future__ import annotations

from celery import shared_task

from integrations.delivery_log import delivery_log_prune
from integrations.user_mapping import crm_users_fetch


@shared_task(name="integrations.crm_users_fetch")
def crm_users_fetch_task(fetch_id: int) -> dict[str, object]:
    """Fetch the CRM users of the `UserFetch` `fetch_id` and re-run the email auto-match."""
    fetch = crm_users_fetch(fetch_id=fetch_id)
    return {"fetch_id": fetch.pk, "state": fetch.state, "fetched": fetch.fetched}


@shared_task(name="integrations.delivery_log_prune")
def delivery_log_prune_task() -> int:
    """Delete delivery log entries older than DELIVERY_LOG_RETENTION_DAYS (run daily by beat)."""
    return delivery_log_prune()
