"""Fixtures of the messaging, caller lookup and click-to-call tests: the tenant cast, the
sandbox servers (SMS provider, generic CRM, Zoho, a recorder for outbound callbacks) and
loopback access for outbound requests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache

from integrations.sandbox.pytest_fixtures import (
    crm_server,
    running_sandbox,
    sms_server,
    zoho_server,
)
from integrations.sandbox.recorder import RecorderSandbox
from tests.tenants.conftest import tenant_a, tenant_b

__all__ = ["crm_server", "sms_server", "tenant_a", "tenant_b", "zoho_server"]


@pytest.fixture(autouse=True)
def allow_loopback(settings: Any) -> None:
    """The sandbox servers listen on 127.0.0.1, which the SSRF guard refuses by default."""
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    """Caller lookup answers are cached: every test starts with an empty cache."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def recorder() -> Iterator[RecorderSandbox]:
    """A catch-all HTTP receiver standing in for the PBX's callback endpoints."""
    server = running_sandbox(RecorderSandbox)
    server.reset()
    yield server  # type: ignore[misc]
    server.clear_injections()
