"""Suite-wide fixtures.

Every test runs behind a network guard: a socket that tries to connect anywhere but the
loopback range fails the test at once, so no packet ever leaves the machine (the SSRF tests
rely on this to prove that refusal happens *before* connecting).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator

import pytest


class NonLoopbackConnectAttempt(AssertionError):
    """A test tried to open a connection to an address outside 127.0.0.0/8 and ::1."""


def _is_loopback(address: object) -> bool:
    if isinstance(address, tuple) and address:
        host = address[0]
    else:
        # AF_UNIX sockets (a path) never leave the machine.
        return True
    if isinstance(host, bytes):
        host = host.decode()
    try:
        return ipaddress.ip_address(str(host).split("%", 1)[0]).is_loopback
    except ValueError:
        # A name rather than an address: only "localhost" is acceptable.
        return str(host) == "localhost"


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
# Attempts seen during the current test: the code under test may swallow the exception (an
# HTTP client turning it into its own error), so the fixture also fails the test afterwards.
_attempts: list[str] = []


def _refuse(self: socket.socket, address: object) -> None:
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address):
        _attempts.append(repr(address))
        raise NonLoopbackConnectAttempt(f"test tried to connect to non-loopback {address!r}")


def _guarded_connect(self: socket.socket, address: object) -> None:
    _refuse(self, address)
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    _refuse(self, address)
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True)
def loopback_only_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail any test that opens a connection to a non-loopback address."""
    _attempts.clear()
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)
    yield
    if _attempts:
        attempts, _attempts[:] = list(_attempts), []
        pytest.fail(f"the test tried to connect outside loopback: {', '.join(attempts)}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of asking)."""
    return _free_port()


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    """Factories hash a real password per user; MD5 keeps that cheap in tests only."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
