"""Pytest fixtures for the sandbox servers, importable from any conftest.

Use them from a ``conftest.py``::

    from integrations.sandbox.pytest_fixtures import crm_server, zoho_server  # noqa: F401

or list the module in the root conftest's ``pytest_plugins``. Each server is started once
per test process on a free loopback port (lazily, the first time a test asks for it) and
reset before every test: recorded requests, injections, clock, tunables and data all start
from the seed. Servers are daemon threads and stop with the process.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Iterator

import pytest

from integrations.sandbox.base import SandboxServer
from integrations.sandbox.generic_crm import GenericCrmSandbox
from integrations.sandbox.ringrx import RingRxSandbox
from integrations.sandbox.sms import SmsProviderSandbox
from integrations.sandbox.zoho import ZohoPhoneBridgeSandbox

_running: dict[type[SandboxServer], SandboxServer] = {}
_start_lock = threading.Lock()


def running_sandbox(kind: type[SandboxServer]) -> SandboxServer:
    """The process-wide server of ``kind``, started on a free port on first use."""
    with _start_lock:
        server = _running.get(kind)
        if server is None:
            server = kind(port=0).start()
            _running[kind] = server
        return server


def _stop_all() -> None:
    for server in _running.values():
        server.stop()


atexit.register(_stop_all)


def _fresh(kind: type[SandboxServer]) -> Iterator[SandboxServer]:
    server = running_sandbox(kind)
    server.reset()
    yield server
    server.clear_injections()


@pytest.fixture
def zoho_server() -> Iterator[ZohoPhoneBridgeSandbox]:
    """The Zoho PhoneBridge + Accounts sandbox, reset for this test."""
    yield from _fresh(ZohoPhoneBridgeSandbox)  # type: ignore[misc]


@pytest.fixture
def ringrx_server() -> Iterator[RingRxSandbox]:
    """The RingRx sandbox, reset for this test."""
    yield from _fresh(RingRxSandbox)  # type: ignore[misc]


@pytest.fixture
def crm_server() -> Iterator[GenericCrmSandbox]:
    """The generic CRM sandbox, reset for this test."""
    yield from _fresh(GenericCrmSandbox)  # type: ignore[misc]


@pytest.fixture
def sms_server() -> Iterator[SmsProviderSandbox]:
    """The SMS provider sandbox, reset for this test."""
    yield from _fresh(SmsProviderSandbox)  # type: ignore[misc]
