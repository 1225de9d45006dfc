"""Webhook ingest: POST /api/v1/hooks/pbx/<org>/call under gunicorn, against a bare view.

Usage: ``python bench/webhook_ingest.py [--requests N] [--concurrency C] [--workers W]``

Starts, on loopback only: a throwaway PostgreSQL database (SQLite if PostgreSQL is not
reachable), gunicorn (W sync workers) serving the portal with ``BENCH_BARE_VIEW=true``, and
uses the machine's Redis (a dedicated db and queue) as the Celery broker — no worker consumes
it, so what is measured is the webhook view's own work: authenticate the organization's
secret, validate the call event against its JSON schema, store the inbox row, publish the
processing task on commit, answer 202.

The baseline is ``/bench/bare``, a Django view that answers 200 on the same server and
middleware stack. Rounds alternate bare and ingest so machine noise hits both alike; every
ingest request is a new call (no duplicates). The figures come from this run; the last line is

    RESULT webhook_ingest ratio=<rps bare / rps ingest> ingest_rps=… bare_rps=…
                          p50_ms=… p99_ms=… db=… broker=…  (one line)

(p50/p99 are the ingest latencies, client-side, in ms.)
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _pipeline import (
    REDIS_URL,
    LoadResult,
    Portal,
    backend_tags,
    gunicorn,
    log,
    new_queue,
    percentile,
    portal_env,
    redis_available,
    redis_forget_queue,
    run_load,
    throwaway_database,
)


def call_event(index: int, run: str) -> bytes:
    return json.dumps(
        {
            "event_id": f"{run}-{index}",
            "call_id": f"{run}-call-{index}",
            "direction": "inbound",
            "status": "ringing",
            "caller_number": "+14155550100",
            "caller_name": "Jane Doe",
            "called_number": "+14155550123",
            "extension": "101",
            "start": "2025-01-01T10:00:00Z",
        }
    ).encode()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1500, help="ingest requests (and bare)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    broker = REDIS_URL if redis_available() else "memory://"
    if broker == "memory://":
        log("# Redis not reachable: publishing to an in-memory broker instead")
    queue = new_queue("ingest")
    run = uuid.uuid4().hex[:8]
    with throwaway_database() as database_url:
        env = portal_env(database_url, broker_url=broker, queue=queue, BENCH_BARE_VIEW="true")
        portal = Portal(env=env, queue=queue, broker_url=broker)
        portal.setup()
        from tenants.models import Account, Organization

        account = Account.objects.create(name="Bench Reseller", slug=f"bench-{run}")
        org = Organization.objects.create(
            account=account, name="Bench Org", slug=f"bench-org-{run}", pbx_domain="bench.example"
        )
        key, secret = org.webhook_key, org.webhook_secret
        log(f"# database {database_url.split('@')[-1]}, broker {broker}, queue {queue}")
        try:
            with gunicorn(env, workers=args.workers) as base:
                ingest_url = f"{base}/api/v1/hooks/pbx/{key}/call"
                bare_url = f"{base}/bench/bare"
                headers = {"Content-Type": "application/json", "X-Patchbay-Secret": secret}

                def ingest(session, index: int) -> int:
                    return session.post(
                        ingest_url, data=call_event(index, run), headers=headers, timeout=30
                    ).status_code

                def bare(session, index: int) -> int:
                    return session.post(
                        bare_url, data=call_event(index, run), headers=headers, timeout=30
                    ).status_code

                # Warm-up: connections, imports, the first queries of each worker.
                warm = max(50, args.concurrency * 4)
                run_load(bare, count=warm, concurrency=args.concurrency, ok=lambda s: s == 200)
                run_load(
                    lambda s, i: ingest(s, 10_000_000 + i),
                    count=warm,
                    concurrency=args.concurrency,
                    ok=lambda s: s == 202,
                )
                bare_total, ingest_total = LoadResult(), LoadResult()
                per_round = max(1, args.requests // args.rounds)
                for number in range(args.rounds):
                    offset = number * per_round
                    for name, total, send, ok_status in (
                        ("bare", bare_total, bare, 200),
                        ("ingest", ingest_total, lambda s, i, o=offset: ingest(s, o + i), 202),
                    ):
                        result = run_load(
                            send,
                            count=per_round,
                            concurrency=args.concurrency,
                            ok=lambda s, want=ok_status: s == want,
                        )
                        if result.errors:
                            raise SystemExit(f"{name}: {result.errors} failed ({result.statuses})")
                        total.latencies_ms += result.latencies_ms
                        total.wall_seconds += result.wall_seconds
                        log(f"round {number + 1} {name}: {result.rps:.0f} req/s")
        finally:
            redis_forget_queue(broker, queue)
            from django.db import connections

            connections.close_all()
    tags = backend_tags(database_url, broker=broker)
    p50 = percentile(ingest_total.latencies_ms, 50)
    p99 = percentile(ingest_total.latencies_ms, 99)
    ratio = bare_total.rps / ingest_total.rps if ingest_total.rps else 0.0
    log(
        f"bare: {bare_total.rps:.0f} req/s p50 {percentile(bare_total.latencies_ms, 50):.2f} ms; "
        f"ingest: {ingest_total.rps:.0f} req/s p50 {p50:.2f} ms p99 {p99:.2f} ms"
    )
    print(
        f"RESULT webhook_ingest ratio={ratio:.2f} ingest_rps={ingest_total.rps:.0f} "
        f"bare_rps={bare_total.rps:.0f} p50_ms={p50:.2f} p99_ms={p99:.2f} {tags}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
