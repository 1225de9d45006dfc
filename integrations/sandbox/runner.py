"""Start every sandbox server at once, for demos and spec authors.

``python -m integrations.sandbox`` and ``python manage.py sandbox`` both call :func:`run_all`
and :func:`serve_forever`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from integrations.sandbox.base import SandboxServer, require_loopback_host
from integrations.sandbox.generic_crm import GenericCrmSandbox
from integrations.sandbox.ringrx import RingRxSandbox
from integrations.sandbox.sms import SmsProviderSandbox
from integrations.sandbox.zoho import ZohoPhoneBridgeSandbox

#: Every imitation, in port order: name → class.
SANDBOXES: dict[str, type[SandboxServer]] = {
    "zoho": ZohoPhoneBridgeSandbox,
    "ringrx": RingRxSandbox,
    "crm": GenericCrmSandbox,
    "sms": SmsProviderSandbox,
}

DEFAULT_BASE_PORT = 8101


def default_ports(base_port: int = DEFAULT_BASE_PORT) -> dict[str, int]:
    """``{"zoho": base, "ringrx": base + 1, "crm": base + 2, "sms": base + 3}``."""
    return {name: base_port + offset for offset, name in enumerate(SANDBOXES)}


def run_all(
    ports: dict[str, int] | None = None, host: str = "127.0.0.1", verbose: bool = False
) -> list[SandboxServer]:
    """Start every sandbox server (or those named in ``ports``) and return them, running.

    Args:
        ports: name → port (0 for a free one); default :func:`default_ports`.
        host: a loopback address.
        verbose: log each request to stderr.

    Raises:
        ValueError: ``host`` is not loopback, or ``ports`` names an unknown sandbox.
        OSError: a port is taken (servers already started are stopped first).
    """
    require_loopback_host(host)
    ports = default_ports() if ports is None else ports
    unknown = sorted(set(ports) - set(SANDBOXES))
    if unknown:
        raise ValueError(f"unknown sandbox {', '.join(unknown)}; known: {', '.join(SANDBOXES)}")
    started: list[SandboxServer] = []
    try:
        for name, port in ports.items():
            started.append(SANDBOXES[name](host=host, port=port, verbose=verbose).start())
    except OSError:
        for server in started:
            server.stop()
        raise
    return started


def describe(servers: list[SandboxServer]) -> str:
    """A few lines per server: URL, what it imitates, where its admin API is."""
    lines = []
    for server in servers:
        lines.append(f"{server.name:<7} {server.url:<24} {server.description}")
        lines.append(
            f"{'':<7} admin: {server.url}/_sandbox/ (routes, requests, state, fail, reset)"
        )
    return "\n".join(lines)


def serve_forever(servers: list[SandboxServer], write: Callable[[str], object] = print) -> None:
    """Block until Ctrl-C, then stop every server."""
    write(describe(servers))
    write("Press Ctrl-C to stop.")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        write("stopping")
    finally:
        for server in servers:
            server.stop()
