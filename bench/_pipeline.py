"""Shared machinery of the event-pipeline benchmarks (webhook_ingest, end_to_end, lookup).

Everything runs on this machine and is removed afterwards:

* a throwaway database: a new PostgreSQL database on 127.0.0.1:5432 (``BENCH_POSTGRES_URL``,
  default ``postgres://postgres@127.0.0.1:5432/postgres``, used only to create and drop it), or a
  SQLite file in a temporary directory when PostgreSQL is not reachable;
* Redis: the machine's 127.0.0.1:6379 with a dedicated db number (``BENCH_REDIS_URL``, default
  ``redis://127.0.0.1:6379/12``) and a queue name of our own;
* gunicorn on a free 127.0.0.1 port, and a real Celery worker (tests/support/processes.py).

The bench process itself runs Django against the same database to migrate and seed it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

POSTGRES_ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")


def log(message: str) -> None:
    print(message, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


@contextlib.contextmanager
def throwaway_database(prefer_postgres: bool = True) -> Iterator[str]:
    """A DATABASE_URL of a new, empty database, dropped on exit."""
    if prefer_postgres:
        try:
            import psycopg

            admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
        except Exception as exc:  # no PostgreSQL here: SQLite
            log(f"# PostgreSQL not reachable ({type(exc).__name__}); using SQLite")
        else:
            name = f"bench_{os.getpid()}_{secrets.token_hex(3)}"
            admin.execute(f'CREATE DATABASE "{name}"')
            base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
            try:
                yield f"{base}/{name}"
            finally:
                with contextlib.suppress(Exception):
                    admin.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = %s AND pid <> pg_backend_pid()",
                        [name],
                    )
                    admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
                admin.close()
            return
    with tempfile.TemporaryDirectory(prefix="patchbay-bench-") as directory:
        yield f"sqlite:///{directory}/bench.sqlite3"


def redis_available(url: str = REDIS_URL) -> bool:
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except Exception:
        return False
    return True


def redis_forget_queue(url: str, queue: str) -> None:
    """Remove what a bench left in its queue (messages nobody consumed)."""
    with contextlib.suppress(Exception):
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        client.delete(queue)
        for key in client.scan_iter(f"*{queue}*"):
            client.delete(key)


@dataclass
class Portal:
    """Django configured in this process against the bench database, and the env to give
    to the server and worker processes."""

    env: dict[str, str]
    queue: str
    broker_url: str

    def setup(self) -> None:
        os.environ.update(self.env)
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)


def backend_tags(database_url: str, **urls: str) -> str:
    """``db=postgresql broker=redis …``: what a RESULT line was measured against.

    A run that fell back to SQLite or an in-memory broker says so on its RESULT line, so it is
    never compared with a PostgreSQL/Redis run by mistake.
    """

    def kind(url: str) -> str:
        scheme = url.split(":", 1)[0] if url else "none"
        return {"postgres": "postgresql", "locmemcache": "locmem"}.get(scheme, scheme)

    return " ".join(f"{name}={kind(url)}" for name, url in {"db": database_url, **urls}.items())


def portal_env(database_url: str, *, broker_url: str, queue: str, **extra: str) -> dict[str, str]:
    from cryptography.fernet import Fernet

    env = {
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        # Production settings (DEBUG off) need real keys: fresh ones for this run only.
        "SECRET_KEY": secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url,
        "CELERY_RESULT_BACKEND": broker_url,
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "OUTBOUND_ALLOW_PRIVATE_NETWORKS": "true",
        "DEBUG": "false",
        "LOG_LEVEL": "WARNING",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
    }
    env.update(extra)
    return env


@contextlib.contextmanager
def gunicorn(env: dict[str, str], *, workers: int = 4, threads: int = 1) -> Iterator[str]:
    """gunicorn serving the portal on a free loopback port; yields its base URL."""
    port = free_port()
    log_path = Path(tempfile.gettempdir()) / f"patchbay-bench-gunicorn-{port}.log"
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "portal.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--log-level",
        "warning",
        "--backlog",
        "2048",
    ]
    with open(log_path, "w") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        import requests

        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{log_path.read_text()[-3000:]}")
            try:
                if requests.get(base + "/healthz", timeout=2).status_code < 500:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn not ready:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield base
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


@dataclass
class LoadResult:
    latencies_ms: list[float] = field(default_factory=list)
    wall_seconds: float = 0.0
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return len(self.latencies_ms) / self.wall_seconds if self.wall_seconds else 0.0


def run_load(
    send: Callable[[Any, int], int], *, count: int, concurrency: int, ok: Callable[[int], bool]
) -> LoadResult:
    """Call ``send(session, i)`` for i in range(count) from `concurrency` threads, each with
    its own requests.Session; ``send`` returns the HTTP status."""
    import requests

    result = LoadResult()
    lock = threading.Lock()
    counter = iter(range(count))

    def worker() -> None:
        session = requests.Session()
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                return
            started = time.perf_counter()
            try:
                status = send(session, index)
            except requests.RequestException:
                status = 0
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                result.statuses[status] = result.statuses.get(status, 0) + 1
                if ok(status):
                    result.latencies_ms.append(elapsed)
                else:
                    result.errors += 1

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.wall_seconds = time.perf_counter() - started
    return result


def new_queue(prefix: str) -> str:
    return f"bench-{prefix}-{uuid.uuid4().hex[:8]}"
