"""The event-pipeline benchmarks run with small counts and end with their RESULT line.

They start their own gunicorn, Celery worker and throwaway database, and need the machine's
Redis (webhook_ingest falls back to an in-memory broker, lookup to a local-memory cache)."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

from tests.support.processes import redis_url_for_tests, require_redis

ROOT = pathlib.Path(__file__).resolve().parents[2]
NUMBER = r"\d+(?:\.\d+)?"


def _run(name: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.pop("DATABASE_URL", None)
    process = subprocess.run(
        [sys.executable, str(ROOT / "bench" / f"{name}.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == 0, process.stdout[-2000:] + process.stderr[-4000:]
    lines = process.stdout.strip().splitlines()
    assert len(lines) > 1
    return lines[-1]


def test_webhook_ingest_benchmark_ends_with_the_result_line() -> None:
    line = _run("webhook_ingest", "--requests", "90", "--concurrency", "4", "--workers", "2")
    assert re.fullmatch(
        rf"RESULT webhook_ingest ratio={NUMBER} ingest_rps={NUMBER} bare_rps={NUMBER} "
        rf"p50_ms={NUMBER} p99_ms={NUMBER} db=postgresql broker=redis",
        line,
    ), line


def test_end_to_end_benchmark_ends_with_the_result_line() -> None:
    try:
        require_redis(redis_url_for_tests())
    except RuntimeError as exc:
        pytest.skip(str(exc))
    line = _run("end_to_end", "--events", "10", "--rate", "10")
    assert re.fullmatch(
        rf"RESULT end_to_end p50_ms={NUMBER} p99_ms={NUMBER} events=10 mode=(call|sms) "
        r"db=postgresql broker=redis",
        line,
    ), line


def test_lookup_benchmark_ends_with_the_result_line() -> None:
    line = _run("lookup", "--lookups", "10")
    assert re.fullmatch(
        rf"RESULT lookup cold_p50_ms={NUMBER} cached_p50_ms={NUMBER} ratio={NUMBER} "
        rf"cold_p99_ms={NUMBER} cached_p99_ms={NUMBER} db=postgresql cache=redis",
        line,
    ), line
