"""Fixtures of the event pipeline tests: an organization with a known webhook secret, a
recorder server receiving outbound callbacks, and helpers to post PBX webhooks with each kind
of authentication."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from django.test import Client

from integrations.callbacks import callback_subscription_create
from integrations.models import CallbackSubscription
from integrations.sandbox.pytest_fixtures import ringrx_server, running_sandbox
from integrations.sandbox.recorder import RecorderSandbox
from integrations.webhooks.base import standard_webhooks_sign
from tenants.models import Organization
from tests.factories import OrganizationFactory
from tests.tenants.conftest import tenant_a, tenant_b

__all__ = ["ringrx_server", "tenant_a", "tenant_b"]

SECRET = "pbx-secret-0123456789-abcdefghij"


@pytest.fixture
def recorder() -> Iterator[RecorderSandbox]:
    """A catch-all receiver for outbound callbacks, reset for this test."""
    server = running_sandbox(RecorderSandbox)
    server.reset()
    yield server  # type: ignore[misc]
    server.clear_injections()


@pytest.fixture(autouse=True)
def pipeline_settings(settings: Any, tmp_path: Any) -> None:
    """Loopback callbacks allowed, files under a temporary MEDIA_ROOT, fast retries."""
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.CALLBACK_RETRY_BASE_SECONDS = 0.01
    settings.CALLBACK_RETRY_MAX_SECONDS = 0.05
    settings.CALLBACK_TIMEOUT_SECONDS = 5.0


@pytest.fixture
def org(db: Any) -> Organization:
    return OrganizationFactory(webhook_secret=SECRET, default_region="US")


def hook_url(org: Organization, event: str) -> str:
    return f"/api/v1/hooks/pbx/{org.webhook_key}/{event}"


def basic(password: str, username: str = "ringrx") -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"HTTP_AUTHORIZATION": f"Basic {token}"}


def signed_headers(
    secret: str | list[str], body: bytes, *, timestamp: int | None = None, msg_id: str = ""
) -> dict[str, str]:
    """Standard Webhooks headers for Django's test client (one signature per secret)."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    timestamp = int(time.time()) if timestamp is None else timestamp
    secrets = [secret] if isinstance(secret, str) else secret
    signature = " ".join(standard_webhooks_sign(s, msg_id, timestamp, body) for s in secrets)
    return {
        "HTTP_WEBHOOK_ID": msg_id,
        "HTTP_WEBHOOK_TIMESTAMP": str(timestamp),
        "HTTP_WEBHOOK_SIGNATURE": signature,
    }


def post_hook(
    client: Client,
    org: Organization,
    event: str,
    body: bytes | str | dict,
    *,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
    query: str = "",
) -> Any:
    """POST a PBX webhook (Basic auth with the org secret unless `headers` say otherwise)."""
    if isinstance(body, dict):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    url = hook_url(org, event) + (f"?{query}" if query else "")
    extra = basic(SECRET) if headers is None else headers
    return client.generic("POST", url, data=body, content_type=content_type, **extra)


def subscribe(
    org: Organization, callback_type: str, url: str, **kwargs: Any
) -> tuple[CallbackSubscription, str]:
    return callback_subscription_create(
        organization=org,
        name=f"{callback_type} hook",
        callback_type=callback_type,
        url=url,
        **kwargs,
    )


# --- Celery against a real broker -------------------------------------------------------------


def _reset_celery_connections() -> None:
    """Forget every broker connection and producer (kombu keeps process-wide pools, which
    even eager tasks acquire from) so the next task uses the current configuration."""
    import kombu.pools

    from portal.celery import app

    kombu.pools.reset()
    app._pool = None
    # `amqp` caches the producer pool, the queues and the router built from the config.
    app.__dict__.pop("amqp", None)


@contextlib.contextmanager
def celery_broker(url: str, *, queue: str = "celery") -> Iterator[None]:
    """Point this process's Celery app at `url` (not eager) and send to `queue`; restored on
    exit. Django's CELERY_* settings are read once, so the app's config is changed directly."""
    from portal.celery import app

    names = ("broker_url", "task_always_eager", "task_default_queue")
    saved = {name: app.conf[name] for name in names}
    _reset_celery_connections()
    app.conf.update(broker_url=url, task_always_eager=False, task_default_queue=queue)
    try:
        yield
    finally:
        _reset_celery_connections()
        app.conf.update(saved)


@dataclass
class RedisServer:
    """A redis-server of our own on a free port: a test may stop it without touching the
    machine's shared Redis."""

    port: int
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=self.port, socket_connect_timeout=0.2).ping()
                return
            except redis.exceptions.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL this server (by its pid), as a crashed broker."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@pytest.fixture
def own_redis(free_port: int) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(free_port)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def worker_env(settings: Any, queue: str, **extra: str) -> dict[str, str]:
    """What a worker process needs to share this test's world: the test database,
    MEDIA_ROOT, loopback access to the sandboxes, short callback retries, and the tasks it
    creates sent to `queue` (its own); `extra` adds or overrides variables."""
    from django.db import connection

    db = connection.settings_dict
    url = (
        f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{db['NAME']}"
    )
    return {
        "DATABASE_URL": url,
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "OUTBOUND_ALLOW_PRIVATE_NETWORKS": "true",
        "CALLBACK_RETRY_BASE_SECONDS": "0.2",
        "CALLBACK_RETRY_MAX_SECONDS": "1",
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        **extra,
    }
