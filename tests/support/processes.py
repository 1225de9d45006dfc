"""Real processes for end-to-end tests: a Celery worker on our own queue.

A test only ever stops or kills the processes it started, by their ids.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[2]


def redis_url_for_tests() -> str:
    return os.environ.get("REDIS_URL_TEST", "redis://127.0.0.1:6379/14")


def require_redis(url: str) -> None:
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.exceptions.ConnectionError as exc:
        raise RuntimeError(
            f"Redis is not reachable at {url}; start it (make test does) or set REDIS_URL_TEST"
        ) from exc


@dataclass
class WorkerProcess:
    process: subprocess.Popen
    queue: str
    broker_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL this worker (and only it), as a crash would."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


@contextmanager
def celery_worker(
    *, broker_url: str | None = None, queue: str | None = None, extra_env: dict | None = None
) -> Iterator[WorkerProcess]:
    """Start `celery -A portal worker` consuming `queue`; wait until it is ready."""
    broker_url = broker_url or redis_url_for_tests()
    require_redis(broker_url)
    queue = queue or f"test-{uuid.uuid4().hex[:10]}"
    log_dir = ROOT / "var" / "test-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"worker-{queue}.log"
    env = {
        **os.environ,
        "CELERY_BROKER_URL": broker_url,
        "CELERY_RESULT_BACKEND": broker_url,
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        **(extra_env or {}),
    }
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "portal",
                "worker",
                "--pool=solo",
                "--concurrency=1",
                "-Q",
                queue,
                "-n",
                f"{queue}@127.0.0.1",
                "--without-gossip",
                "--without-mingle",
                "--loglevel=INFO",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    worker = WorkerProcess(process, queue, broker_url, log_path)
    try:
        deadline = time.monotonic() + 60
        while "ready." not in worker.log():
            if process.poll() is not None:
                raise RuntimeError(f"celery worker exited early:\n{worker.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"celery worker not ready after 60 s:\n{worker.log()}")
            time.sleep(0.2)
        yield worker
    finally:
        worker.stop()
