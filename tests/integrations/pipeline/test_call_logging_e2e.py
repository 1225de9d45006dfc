"""Call logging with real processes: a worker SIGKILLed in the middle of logging a call (its
message unacknowledged until the broker's visibility timeout, an hour by default) — the
sweeper hands the call to another worker, which logs it once."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from integrations.call_logging import call_activity_sweep
from integrations.models import CallActivity, InboxEvent
from integrations.sandbox.pytest_fixtures import crm_server
from tests.integrations.calls.support import call_event, crm_installation, mapped_user
from tests.integrations.pipeline.conftest import celery_broker, post_hook, worker_env
from tests.support.processes import celery_worker, wait_until

__all__ = ["crm_server"]

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("a worker process needs a database it can share (PostgreSQL)")


def test_a_worker_killed_while_logging_a_call_is_recovered_by_the_sweeper_once(
    client: Any, org: Any, crm_server: Any, own_redis: Any, settings: Any
) -> None:
    installation = crm_installation(org, crm_server)
    mapped_user(installation)
    crm_server.delay_next("/contacts/search", seconds=20)
    queue = f"test-call-kill-{org.pk}"
    env = worker_env(settings, queue)

    with celery_broker(own_redis.url, queue=queue):
        with celery_worker(broker_url=own_redis.url, queue=queue, extra_env=env) as first:
            response = post_hook(client, org, "call", call_event("c-800", "completed"))
            assert response.status_code == 202, response.content
            # The worker is inside the lookup (the CRM holds the request).
            wait_until(lambda: crm_server.requests_to("/contacts/search"), "the lookup", first)
            first.kill()
        assert first.process.returncode == -9

        assert InboxEvent.objects.get().state == "done"
        activity = CallActivity.objects.get()
        assert activity.state == "pending" and activity.next_attempt_at is not None
        assert crm_server.activities_for_call("c-800") == []

        with celery_worker(broker_url=own_redis.url, queue=queue, extra_env=env) as second:
            assert call_activity_sweep(stuck_after_seconds=0) == [activity.pk]
            wait_until(
                lambda: CallActivity.objects.get().state == "created", "the activity", second
            )

    [logged] = crm_server.activities_for_call("c-800")
    assert logged["duration"] == 285
    assert len(crm_server.requests_to("/activities", "POST")) == 1
    activity.refresh_from_db()
    assert activity.activity_id == logged["id"] and activity.next_attempt_at is None
    assert call_activity_sweep(stuck_after_seconds=0) == []
