"""Fixtures of the integrations portal tests: the tenant cast (two resellers, see
tests/tenants/conftest.py), the sandbox servers, and loopback access for outbound requests."""

from __future__ import annotations

from typing import Any

import pytest

from integrations.sandbox.pytest_fixtures import crm_server, sms_server, zoho_server
from tests.tenants.conftest import tenant_a, tenant_b

__all__ = ["crm_server", "sms_server", "tenant_a", "tenant_b", "zoho_server"]


@pytest.fixture
def allow_loopback(settings: Any) -> None:
    """The sandbox servers listen on 127.0.0.1, which the SSRF guard refuses by default."""
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
