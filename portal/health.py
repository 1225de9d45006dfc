"""Liveness and readiness: `/healthz` checks the database and, when configured, the broker."""

from __future__ import annotations

import time

from celery import shared_task
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse


@shared_task(name="portal.health.ping")
def ping(payload: str = "pong") -> str:
    """A task that proves a worker is consuming: it returns its payload."""
    return payload


def _check_database() -> tuple[bool, str]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return False, f"database unreachable: {exc.__class__.__name__}"
    return True, "ok"


def _check_broker() -> tuple[bool, str]:
    if not settings.CELERY_BROKER_URL:
        return True, "not configured (tasks run in-process)"
    from portal.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        return False, f"broker unreachable: {exc.__class__.__name__}"
    return True, "ok"


def healthz(request: HttpRequest) -> JsonResponse:
    started = time.monotonic()
    checks = {"database": _check_database(), "broker": _check_broker()}
    healthy = all(ok for ok, _ in checks.values())
    body = {
        "status": "ok" if healthy else "error",
        "checks": {name: detail for name, (_, detail) in checks.items()},
        "duration_ms": round((time.monotonic() - started) * 1000, 1),
    }
    return JsonResponse(body, status=200 if healthy else 503)
