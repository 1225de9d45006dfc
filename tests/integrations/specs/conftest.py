"""Fixtures and helpers for the built-in spec tests.

The sandbox servers (`crm_server`, `zoho_server`, `sms_server`, `ringrx_server`) come from
`integrations.sandbox.pytest_fixtures`; `recorder_server` is the catch-all receiver that
stands in for the portal when a sandbox posts to us (RingRx callbacks). Each spec's tests
build a `SpecClient` with `allow_private_networks=True`: the sandboxes listen on 127.0.0.1.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from integrations.engine.spec import Spec, load_spec
from integrations.sandbox.pytest_fixtures import (  # noqa: F401
    crm_server,
    ringrx_server,
    running_sandbox,
    sms_server,
    zoho_server,
)
from integrations.sandbox.recorder import RecorderSandbox

SPECS_DIR = pathlib.Path(__file__).resolve().parents[3] / "integrations" / "specs"
FIXTURES_DIR = pathlib.Path(__file__).resolve().parents[2] / "fixtures"


def builtin_spec(spec_id: str) -> Spec:
    """The built-in spec `integrations/specs/<spec_id>.json`, loaded and validated."""
    return load_spec(SPECS_DIR / f"{spec_id}.json")


def recorded_exchanges(spec_id: str) -> list[dict[str, Any]]:
    """The recorded request/response examples of a spec (`tests/fixtures/<spec id>/*.json`).

    Each holds `name`, `method` (the spec method), `step` (its index for a stepped method),
    `values` (what the step was rendered with), `request` (what the engine sent: `method`,
    `path`, `query` pairs, `content_type`, `body`), `response` (`status`, `body`) and
    `mapped` (the records, or the captured values, the engine made of it).
    """
    folder = FIXTURES_DIR / spec_id
    exchanges = []
    for path in sorted(folder.glob("*.json")):
        exchange = json.loads(path.read_text(encoding="utf-8"))
        exchange.setdefault("name", path.stem)
        exchanges.append(exchange)
    return exchanges


@dataclass
class SleepRecorder:
    """Stands in for `time.sleep` in `HttpSession`: records each wait, never sleeps."""

    waits: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    """A fresh sleep recorder for an `HttpSession(sleep=...)`."""
    return SleepRecorder()


@pytest.fixture
def recorder_server() -> Iterator[RecorderSandbox]:
    """A catch-all receiver on loopback that records what is posted to it, reset per test."""
    server = running_sandbox(RecorderSandbox)
    server.reset()
    yield server  # type: ignore[misc]
    server.clear_injections()
