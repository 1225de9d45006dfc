"""A real Celery worker process consuming from Redis runs our task."""

from __future__ import annotations

import pytest
from celery import Celery

from portal.celery import app as portal_app
from tests.support.processes import celery_worker

pytestmark = pytest.mark.e2e


def test_a_real_worker_runs_the_health_task_and_returns_its_result():
    with celery_worker() as worker:
        client = Celery("probe", broker=worker.broker_url, backend=worker.broker_url)
        result = client.send_task(
            "portal.health.ping", args=["hello from the test"], queue=worker.queue
        )

        assert result.get(timeout=30) == "hello from the test"
    assert "portal.health.ping" in worker.log()


def test_tasks_are_configured_to_be_acknowledged_late_and_rejected_when_a_worker_dies():
    # Only the configuration; the recovery itself is proven with a real SIGKILLed worker in
    # tests/integrations/pipeline/test_pipeline_e2e.py.
    assert portal_app.conf.task_acks_late is True
    assert portal_app.conf.task_reject_on_worker_lost is True
    assert portal_app.conf.worker_prefetch_multiplier == 1


def test_without_a_broker_tasks_run_in_process(settings):
    import portal.health  # noqa: F401  (registers the task; in the app, the URL conf does)

    assert settings.CELERY_BROKER_URL == ""
    assert portal_app.conf.task_always_eager is True
    assert portal_app.tasks["portal.health.ping"].delay("inline").get() == "inline"
