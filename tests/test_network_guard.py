"""The suite's network guard itself: a connection outside loopback fails the test even when the
code under test swallows the error, and never reaches the network."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import NonLoopbackConnectAttempt, _attempts


def test_a_connect_to_a_private_address_is_refused_before_any_packet():
    with (
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock,
        pytest.raises(NonLoopbackConnectAttempt),
    ):
        sock.connect(("10.0.0.1", 80))
    # Recorded, so the fixture would fail the test: clear it, this one expects the refusal.
    assert _attempts == ["('10.0.0.1', 80)"]
    _attempts.clear()


def test_loopback_spellings_are_allowed(free_port):
    for host in ("127.0.0.1", "127.1.2.3"):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            assert sock.connect_ex((host, free_port)) != 0  # refused by the kernel, not us
    assert _attempts == []
