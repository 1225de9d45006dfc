"""End to end with real processes: PostgreSQL, a Redis broker of our own (so stopping it
touches nobody else), and real Celery workers that a test may SIGKILL.

* an accepted webhook is processed by a worker and forwarded to a callback receiver;
* a worker killed in the middle of a task: after a restart the event is delivered, once
  (one delivery, one webhook-id; the receiver may see the interrupted attempt too, with the
  same webhook-id to deduplicate);
* the broker down while webhooks arrive: every webhook is answered 2xx and stored, and all are
  processed once the broker is back and the sweeper has run.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from integrations.callbacks import callback_sweep
from integrations.inbox import inbox_sweep
from integrations.models import CallbackDelivery, InboxEvent
from tests.integrations.pipeline.conftest import celery_broker, post_hook, subscribe, worker_env
from tests.integrations.pipeline.ringrx_payloads import json_body
from tests.support.processes import celery_worker, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("a worker process needs a database it can share (PostgreSQL)")


def _cdr(n: int) -> bytes:
    import json

    payload = json.loads(json_body("cdr"))
    payload["id"] = 1000 + n
    return json.dumps(payload).encode()


def test_an_accepted_webhook_is_processed_by_a_real_worker(
    client: Any, org: Any, recorder: Any, own_redis: Any, settings: Any
) -> None:
    subscribe(org, "cdr", f"{recorder.url}/cdr/{{id}}")
    queue = "test-e2e-" + str(org.pk)
    # The worker sends the tasks it creates (callback deliveries) to its default queue.
    env = worker_env(settings, queue)
    with (
        celery_worker(broker_url=own_redis.url, queue=queue, extra_env=env) as worker,
        celery_broker(own_redis.url, queue=queue),
    ):
        response = post_hook(client, org, "cdr", _cdr(1))
        assert response.status_code == 202
        event_id = response.json()["id"]

        wait_until(
            lambda: InboxEvent.objects.get(pk=event_id).state == "done", "processing", worker
        )
        wait_until(lambda: recorder.requests_to("/cdr/1001"), "the callback", worker)

    assert "integrations.inbox_process" in worker.log()
    event = InboxEvent.objects.get(pk=event_id)
    assert event.attempts == 1
    assert CallbackDelivery.objects.get().state == "delivered"


def test_a_worker_killed_mid_task_is_recovered_and_the_event_delivered_once(
    client: Any, org: Any, recorder: Any, own_redis: Any, settings: Any
) -> None:
    subscribe(org, "cdr", f"{recorder.url}/slow")
    recorder.delay_next("/slow", seconds=20)
    queue = "test-kill-" + str(org.pk)
    env = worker_env(settings, queue)

    with celery_broker(own_redis.url, queue=queue):
        with celery_worker(broker_url=own_redis.url, queue=queue, extra_env=env) as first:
            response = post_hook(client, org, "cdr", _cdr(2))
            assert response.status_code == 202
            # The worker is inside the callback's HTTP request (the receiver holds it).
            wait_until(lambda: recorder.requests_to("/slow"), "the first attempt", first)
            first.kill()
        assert first.process.returncode == -9

        event = InboxEvent.objects.get()
        assert (event.state, event.attempts) == ("done", 1)
        # The attempt's transaction died with the worker: the delivery is still pending.
        delivery = CallbackDelivery.objects.get()
        assert delivery.state == "pending"

        with celery_worker(broker_url=own_redis.url, queue=queue, extra_env=env) as second:
            assert callback_sweep(stuck_after_seconds=0) == [delivery.pk]
            wait_until(
                lambda: CallbackDelivery.objects.get().state == "delivered", "redelivery", second
            )

    requests = recorder.requests_to("/slow")
    assert len(requests) == 2  # the interrupted attempt and the one that completed
    assert {r.header("webhook-id") for r in requests} == {delivery.webhook_id}
    assert CallbackDelivery.objects.count() == 1
    event.refresh_from_db()
    assert (event.state, event.attempts) == ("done", 1)


def test_webhooks_arriving_while_the_broker_is_down_are_stored_then_processed(
    client: Any, org: Any, recorder: Any, own_redis: Any, settings: Any, caplog: Any
) -> None:
    subscribe(org, "cdr", f"{recorder.url}/cdr/{{id}}")
    queue = "test-down-" + str(org.pk)
    env = worker_env(settings, queue)

    with celery_broker(own_redis.url, queue=queue):
        own_redis.kill()
        responses = [post_hook(client, org, "cdr", _cdr(n)) for n in range(5)]

        assert [r.status_code for r in responses] == [202] * 5
        assert sorted(InboxEvent.objects.values_list("state", flat=True)) == ["received"] * 5
        assert caplog.text.count("the sweeper will pick it up") == 5

        own_redis.start()
        with celery_worker(broker_url=own_redis.url, queue=queue, extra_env=env) as worker:
            swept = inbox_sweep(stuck_after_seconds=0)
            assert len(swept) == 5
            wait_until(
                lambda: InboxEvent.objects.filter(state="done").count() == 5, "processing", worker
            )
            wait_until(
                lambda: CallbackDelivery.objects.filter(state="delivered").count() == 5,
                "the callbacks",
                worker,
            )

    assert sorted(r.path for r in recorder.requests) == [f"/cdr/{1000 + n}" for n in range(5)]
    assert list(InboxEvent.objects.values_list("attempts", flat=True)) == [1] * 5
