"""Fixtures of the call-logging tests: the tenant cast, the CRM sandboxes, loopback access for
outbound requests, and no waiting between retries."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache

from integrations.sandbox.pytest_fixtures import crm_server, running_sandbox, zoho_server
from integrations.sandbox.recorder import RecorderSandbox
from tests.tenants.conftest import tenant_a, tenant_b

__all__ = ["crm_server", "tenant_a", "tenant_b", "zoho_server"]


@pytest.fixture(autouse=True)
def call_log_settings(settings: Any) -> None:
    """The sandboxes listen on 127.0.0.1 (refused by the SSRF guard by default); retries are
    counted, not waited for (eager Celery runs a retry at once anyway)."""
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    settings.CALL_LOG_MAX_RETRIES = 5
    settings.CALL_LOG_RETRY_BASE_SECONDS = 0.01
    settings.CALL_LOG_RETRY_MAX_SECONDS = 0.05


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def recordings() -> Iterator[RecorderSandbox]:
    """A catch-all server standing in for the PBX's recording storage."""
    server = running_sandbox(RecorderSandbox)
    server.reset()
    yield server  # type: ignore[misc]
    server.clear_injections()
