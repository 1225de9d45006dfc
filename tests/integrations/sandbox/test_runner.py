"""Starting every sandbox at once (``manage.py sandbox`` / ``python -m integrations.sandbox``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests

from integrations.sandbox.runner import SANDBOXES, default_ports, describe, run_all

PROJECT = Path(__file__).resolve().parents[3]


def test_default_ports() -> None:
    assert default_ports() == {"zoho": 8101, "ringrx": 8102, "crm": 8103, "sms": 8104}
    assert default_ports(9000)["sms"] == 9003


def test_run_all_starts_every_sandbox() -> None:
    servers = run_all(dict.fromkeys(SANDBOXES, 0))
    try:
        assert [s.name for s in servers] == ["zoho", "ringrx", "crm", "sms"]
        for server in servers:
            index = requests.get(server.url + "/_sandbox/", timeout=5).json()
            assert index["name"] == server.name
            assert index["routes"]
        text = describe(servers)
        assert all(server.url in text for server in servers)
    finally:
        for server in servers:
            server.stop()


def test_run_all_refuses_non_loopback_and_unknown_names() -> None:
    with pytest.raises(ValueError, match="loopback"):
        run_all({"crm": 0}, host="0.0.0.0")
    with pytest.raises(ValueError, match="unknown sandbox"):
        run_all({"salesforce": 0})


def test_module_entry_point_refuses_a_public_host() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "integrations.sandbox", "--host", "0.0.0.0"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "loopback" in result.stderr


def test_the_sandbox_imports_no_django() -> None:
    code = (
        "import sys, integrations.sandbox.runner, integrations.sandbox.pytest_fixtures;"
        "bad = sorted(m for m in sys.modules if m == 'django' or m.startswith('django.'));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
