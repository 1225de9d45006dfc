"""Real processes for end-to-end tests: a Celery worker on our own queue, and waiting for what
it does.

A test only ever stops or kills the processes it started, by their ids (a prefork worker as
the process group it leads).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
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


def wait_until(
    condition: Callable[[], object],
    what: str,
    worker: WorkerProcess | None = None,
    timeout: float = 30,
) -> None:
    """Poll `condition` every 0.1 s until it is true; after `timeout` seconds fail with an
    error naming `what` was awaited, followed by the log of `worker` (if given) to see why."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    log = worker.log() if worker is not None else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{log}")


@dataclass
class WorkerProcess:
    process: subprocess.Popen
    queue: str
    broker_url: str
    log_path: Path
    # Started in a session of its own: the worker leads a process group (with its pool).
    own_session: bool = False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL this worker, as a crash would: the process group it leads (main process and
        pool children) when it has a session of its own, else only its pid."""
        if self.process.poll() is None:
            if self.own_session:
                os.killpg(self.process.pid, signal.SIGKILL)
            else:
                os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def pool_child(self) -> int:
        """The pid of the (single) pool process running the tasks of a prefork worker."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        pids = children.read_text().split()
        assert len(pids) == 1, f"expected one pool process, found {pids}"
        return int(pids[0])

    def stop(self) -> None:
        """SIGTERM (a warm shutdown), SIGKILL after 15 s; then SIGKILL whatever is left of the
        group a worker with its own session leads (a pool child outliving its main process)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.own_session:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)


POOLS = ("solo", "prefork")


@contextmanager
def celery_worker(
    *,
    broker_url: str | None = None,
    queue: str | None = None,
    extra_env: dict | None = None,
    pool: str = "solo",
) -> Iterator[WorkerProcess]:
    """Start `celery -A portal worker` consuming `queue`; wait until it is ready.

    `pool="solo"` runs tasks in the worker's own process; `pool="prefork"` runs them in one
    pool child, as production does, with the worker leading a session (and process group) of
    its own so that `kill()` takes down the main process and its child at once. Each start has
    its own node name and log file, so two workers on one queue keep their logs apart."""
    if pool not in POOLS:
        raise ValueError(f"unknown pool {pool!r}: use one of {', '.join(POOLS)}")
    broker_url = broker_url or redis_url_for_tests()
    require_redis(broker_url)
    queue = queue or f"test-{uuid.uuid4().hex[:10]}"
    name = f"{queue}-{uuid.uuid4().hex[:6]}"
    log_dir = ROOT / "var" / "test-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"worker-{name}.log"
    env = {
        **os.environ,
        "CELERY_BROKER_URL": broker_url,
        "CELERY_RESULT_BACKEND": broker_url,
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        **(extra_env or {}),
    }
    own_session = pool == "prefork"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "portal",
                "worker",
                f"--pool={pool}",
                "--concurrency=1",
                "-Q",
                queue,
                "-n",
                f"{name}@127.0.0.1",
                "--without-gossip",
                "--without-mingle",
                "--loglevel=INFO",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=own_session,
        )
    worker = WorkerProcess(process, queue, broker_url, log_path, own_session=own_session)
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
