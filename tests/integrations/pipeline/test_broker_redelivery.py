"""The broker hands a task back when the worker running it dies (issue 2), end to end with
real processes: PostgreSQL, a redis-server of our own, real Celery workers, and the recorder
sandbox as the callback receiver, which holds the first attempt of a callback delivery open
so that the worker dies in the middle of it. No sweeper runs here: the only way the task can
come back is through the broker.

* The whole worker dies (SIGKILL of the worker and its pool children, as a crashed host or
  container): the next worker gets the task from Redis once the visibility timeout has passed.
* Only the pool child running the task dies (the OOM killer): the worker's main process puts
  the task back at once (CELERY_TASK_REJECT_ON_WORKER_LOST) and runs it again.

How Redis (kombu's transport) redelivers, which the first test relies on:

* A message a worker has taken stays in the Redis hash ``unacked`` (its delivery time in the
  sorted set ``unacked_index``) until it is acknowledged. Tasks are acknowledged late
  (CELERY_TASK_ACKS_LATE), i.e. when they return. A SIGKILLed worker never acknowledges, and
  never restores the message either (kombu does that only on a warm shutdown).
* Redis does nothing by itself: every *consumer* runs kombu's ``restore_visible``, which
  pushes back to its queue each unacked message taken more than ``visibility_timeout``
  seconds ago (CELERY_VISIBILITY_TIMEOUT, default 3600). A worker runs it once when it starts
  polling, then every ``unacked_restore_interval`` x ``unacked_restore_throttle`` seconds
  (kombu 5.7 defaults: 10 x 10 = 100 s). Any worker on the same Redis database restores the
  messages of every queue, not only of its own.
* So in production the task of a killed worker runs again between CELERY_VISIBILITY_TIMEOUT
  and about CELERY_VISIBILITY_TIMEOUT + 100 s after it was taken, as long as some worker
  runs; nothing beyond the existing settings is needed. The flip side: a task running longer
  than the visibility timeout is handed to a second worker while the first still runs it, so
  the timeout must stay above the longest task (the callback delivery holds its row lock
  while it sends, so a second copy does nothing).
* The test uses a 3 s visibility timeout and starts the second worker once that much time
  has passed since the first took the message, so the second worker's start-up sweep
  restores it; a message that is not restored makes the test time out on the delivery.
* Why acknowledging late matters: a prefork worker's main process acknowledges an early-ack
  task as soon as a child starts it, so a crash then loses the message (the prefork case
  fails without CELERY_TASK_ACKS_LATE). A ``--pool=solo`` worker runs the task inside its
  event loop, which sends the early acknowledgement only after the task: killed mid-task it
  leaves the message unacknowledged either way. Production runs the default prefork pool.

Only processes this test started are killed: the solo worker by its pid, a prefork worker as
the process group it leads (started in a session of its own), a pool child by its pid.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import time
from typing import Any

import pytest
import redis
from django.db import connection, transaction

from integrations.models import CallbackDelivery, InboxEvent
from tests.integrations.pipeline.conftest import celery_broker, post_hook, subscribe, worker_env
from tests.integrations.pipeline.ringrx_payloads import json_body
from tests.support.processes import celery_worker, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

VISIBILITY_TIMEOUT = 3  # seconds, for the whole-worker crash
TIMEOUT = 60  # seconds, for each wait of these tests


@pytest.fixture(autouse=True)
def postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("a worker process needs a database it can share (PostgreSQL)")


def _unacked(broker: redis.Redis) -> list[tuple[str, list[Any], float]]:
    """The messages the broker holds as taken but not acknowledged: (task name, args, time
    taken), read from kombu's ``unacked`` hash and ``unacked_index`` sorted set."""
    taken = dict(broker.zrange("unacked_index", 0, -1, withscores=True))
    found = []
    for tag, raw in broker.hgetall("unacked").items():
        message, _exchange, _routing_key = json.loads(raw)
        body = message["body"]
        if message["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body)
        found.append((message["headers"]["task"], json.loads(body)[0], taken[tag]))
    return found


def _row_unlocked(delivery_id: int) -> bool:
    """True once no transaction holds the delivery's row (the killed worker's is rolled back
    when PostgreSQL notices that its connection is gone)."""
    with transaction.atomic():
        return (
            CallbackDelivery.objects.select_for_update(skip_locked=True)
            .filter(pk=delivery_id)
            .exists()
        )


def _send_cdr(client: Any, org: Any, recorder: Any, worker: Any) -> None:
    """Post a CDR webhook whose callback the recorder holds open; return once the worker is
    inside that callback's HTTP request."""
    payload = json.loads(json_body("cdr"))
    payload["id"] = 3001
    response = post_hook(client, org, "cdr", payload)
    assert response.status_code == 202
    wait_until(lambda: recorder.requests_to("/slow"), "the first attempt", worker, timeout=TIMEOUT)


def _wait_delivered_and_acknowledged(broker: redis.Redis, worker: Any, what: str) -> None:
    """Wait for the delivery to be delivered (`what` brings it about), then for the broker to
    hold no unacknowledged message."""
    wait_until(
        lambda: CallbackDelivery.objects.get().state == "delivered", what, worker, timeout=TIMEOUT
    )
    wait_until(lambda: not _unacked(broker), "the task to be acknowledged", worker, timeout=TIMEOUT)


def _assert_delivered_once_more(recorder: Any) -> None:
    """The receiver saw the interrupted attempt and the one that completed, nothing more,
    both with the same webhook-id to deduplicate on."""
    delivery = CallbackDelivery.objects.get()
    requests = recorder.requests_to("/slow")
    assert len(requests) == 2
    assert {r.header("webhook-id") for r in requests} == {delivery.webhook_id}
    # The killed attempt's transaction was rolled back: one recorded attempt, which succeeded.
    assert (delivery.state, delivery.attempts, delivery.last_status) == ("delivered", 1, 200)
    event = InboxEvent.objects.get()
    assert (event.state, event.attempts) == ("done", 1)


@pytest.mark.parametrize("pool", ["prefork", "solo"])
def test_the_task_of_a_killed_worker_is_handed_back_by_the_broker_to_the_next_worker(
    pool: str, client: Any, org: Any, recorder: Any, own_redis: Any, settings: Any
) -> None:
    subscribe(org, "cdr", f"{recorder.url}/slow")
    # The first attempt is not answered while the first worker lives.
    recorder.delay_next("/slow", seconds=30)
    queue = f"test-redeliver-{org.pk}"
    env = worker_env(settings, queue, CELERY_VISIBILITY_TIMEOUT=str(VISIBILITY_TIMEOUT))
    broker = redis.Redis.from_url(own_redis.url)

    with celery_broker(own_redis.url, queue=queue):
        with celery_worker(
            broker_url=own_redis.url, queue=queue, extra_env=env, pool=pool
        ) as first:
            _send_cdr(client, org, recorder, first)
            first.kill()
        assert first.process.returncode == -9

        delivery = CallbackDelivery.objects.get()
        assert delivery.state == "pending"
        # The broker still holds the task as taken by the dead worker and not acknowledged;
        # nothing is waiting in the queue.
        [(task, args, taken_at)] = _unacked(broker)
        assert (task, args) == ("integrations.callback_deliver", [delivery.pk])
        assert broker.llen(queue) == 0

        wait_until(
            lambda: _row_unlocked(delivery.pk),
            "the killed worker's row lock to go",
            timeout=TIMEOUT,
        )
        # Let the visibility timeout pass, so that the next worker's start-up sweep restores it.
        time.sleep(max(0.0, taken_at + VISIBILITY_TIMEOUT + 0.5 - time.time()))

        with celery_worker(
            broker_url=own_redis.url, queue=queue, extra_env=env, pool=pool
        ) as second:
            _wait_delivered_and_acknowledged(
                broker, second, "the broker to hand the task to the second worker"
            )
            log = second.log()
        assert "integrations.callback_deliver[" in log
        assert "'state': 'delivered'" in log

    _assert_delivered_once_more(recorder)
    assert CallbackDelivery.objects.count() == 1
    assert broker.llen(queue) == 0


def test_the_task_of_a_killed_pool_process_is_put_back_and_run_again_by_its_worker(
    client: Any, org: Any, recorder: Any, own_redis: Any, settings: Any
) -> None:
    subscribe(org, "cdr", f"{recorder.url}/slow")
    recorder.delay_next("/slow", seconds=30)
    queue = f"test-requeue-{org.pk}"
    # A visibility timeout far beyond the test: only the worker's reject can bring it back.
    env = worker_env(settings, queue, CELERY_VISIBILITY_TIMEOUT="3600")
    broker = redis.Redis.from_url(own_redis.url)

    with (
        celery_broker(own_redis.url, queue=queue),
        celery_worker(
            broker_url=own_redis.url, queue=queue, extra_env=env, pool="prefork"
        ) as worker,
    ):
        _send_cdr(client, org, recorder, worker)
        os.kill(worker.pool_child(), signal.SIGKILL)

        _wait_delivered_and_acknowledged(broker, worker, "the worker to run the task again")
        assert worker.process.poll() is None  # the worker itself lived on
        log = worker.log()

    assert "WorkerLostError" in log
    assert log.count("'state': 'delivered'") == 1
    _assert_delivered_once_more(recorder)
    assert broker.llen(queue) == 0
