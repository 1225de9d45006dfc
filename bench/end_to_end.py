"""End to end: events posted at a fixed rate → their effect at a third party, with a real
Celery worker, Redis and PostgreSQL.

Usage: ``python bench/end_to_end.py [--events N] [--rate R] [--mode auto|call|sms]``

Starts, on loopback only: a throwaway PostgreSQL database (SQLite if PostgreSQL is not
reachable), gunicorn serving the portal, a Celery worker consuming a queue of our own on the
machine's Redis (a dedicated db), and sandbox servers in this process. Then posts N events at
R per second (open loop: the schedule does not wait for answers) and measures, per event, the
time from sending the webhook to its effect arriving at the sandbox:

* ``call`` mode — a completed call posted to ``/api/v1/hooks/pbx/<org>/call`` → the call
  activity created in the generic CRM sandbox (needs `integrations.call_logging`);
* ``sms`` mode — an inbound SMS (the seed's message model) posted to
  ``/services/example-sms/a<account>`` → stored as a message and forwarded to the
  organization's `sms` callback, received by a recorder server.

``auto`` (the default) uses ``call`` when call logging is installed and answers, else ``sms``
(and says so). The last line is

    RESULT end_to_end p50_ms=… p99_ms=… events=<N delivered> mode=<call|sms> db=… broker=…

Arrival is the moment the sandbox receives the request (its own thread notes the time), not
when this script notices it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _pipeline import (
    REDIS_URL,
    Portal,
    backend_tags,
    gunicorn,
    log,
    new_queue,
    percentile,
    portal_env,
    redis_available,
    redis_forget_queue,
    throwaway_database,
)

SMS_NUMBER = "+14155550123"
CALLER = "+14155550100"


class Arrivals:
    """When each event's effect reached a sandbox (monotonic clock, noted by the sandbox's own
    request thread as the request comes in), by key."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.lock = threading.Lock()

    def note(self, key: str | None) -> None:
        if key:
            with self.lock:
                self.times.setdefault(key, time.monotonic())

    def seen(self, key: str) -> float | None:
        with self.lock:
            return self.times.get(key)

    def server(self, sandbox_class: Any, key_of: Any) -> Any:
        """A started ``sandbox_class`` that notes ``key_of(request)`` of each request."""
        arrivals = self

        class Noting(sandbox_class):  # type: ignore[misc, valid-type]
            def _dispatch(self, request: Any) -> Any:
                arrivals.note(key_of(request))
                return super()._dispatch(request)

        return Noting(port=0).start()


def _sms_setup(org: Any, recorder_url: str, sms_url: str) -> None:
    from integrations.callbacks import callback_subscription_create
    from integrations.models import Installation, IntegrationSpec
    from tenants.models import SmsNumber

    version = IntegrationSpec.objects.get(spec_id="example-sms", account=None).latest_approved()
    installation = Installation.objects.create(
        organization=org, spec_version=version, properties={"API URL": sms_url}
    )
    SmsNumber.objects.create(
        account=org.account, organization=org, number=SMS_NUMBER, installation=installation
    )
    callback_subscription_create(
        organization=org,
        name="PBX sms",
        callback_type="sms",
        url=recorder_url + "/sms",
        signing_secret="",
    )


CALL_CRM_SPEC: dict[str, Any] = {
    "id": "bench-call-crm",
    "name": "Bench Call CRM",
    "class": "crm",
    "properties": [
        {"name": "Base URL", "type": "url", "required": True},
        {"name": "API Key", "type": "secret", "required": True},
    ],
    "resource_url": "$Base URL$",
    "authentication": {"type": "bearer", "token": "$API Key$"},
    "API": {
        "FindContact": {
            "request_method": "GET",
            "request_path": "/contacts/search",
            "request_parameters": {"phone": "$phone$"},
            "response_map": {"records": [{"id": "$contact_id$", "name": "$contact_name$"}]},
        },
        "CreateActivity": {
            "request_method": "POST",
            "request_path": "/activities",
            "request_parameters": {
                "type": "call",
                "subject": "Call",
                "call_id": "$call_id$",
                "direction": "$call_direction$",
                "contact_id": "$contact_id$",
                "phone": "$phone$",
                "duration": "$call_duration$",
            },
            "response_map": {"id": "$activity_id$"},
        },
        "UpdateActivity": {
            "request_method": "PUT",
            "request_path": "/activities/$activity_id$",
            "request_parameters": {"duration": "$call_duration$"},
            "response_map": {"id": "$activity_id$"},
        },
    },
}


def _call_setup(org: Any, crm_url: str, api_key: str) -> None:
    from integrations.models import Installation, IntegrationSpec, SpecVersion

    spec = IntegrationSpec.objects.create(
        spec_id=CALL_CRM_SPEC["id"], name=CALL_CRM_SPEC["name"], spec_class="crm"
    )
    version = SpecVersion.objects.create(
        spec=spec,
        number=1,
        document=CALL_CRM_SPEC,
        sha256=SpecVersion.digest(CALL_CRM_SPEC),
        status=SpecVersion.Status.APPROVED,
    )
    Installation.objects.create(
        organization=org,
        spec_version=version,
        properties={"Base URL": crm_url},
        secret_properties={"API Key": api_key},
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--rate", type=float, default=20.0, help="events per second")
    parser.add_argument("--mode", choices=["auto", "call", "sms"], default="auto")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait at the end")
    args = parser.parse_args()

    if not redis_available():
        raise SystemExit(f"Redis is not reachable at {REDIS_URL}: start it or set BENCH_REDIS_URL")
    mode = args.mode
    if mode == "auto":
        mode = "call" if importlib.util.find_spec("integrations.call_logging") else "sms"
        if mode == "sms":
            log("# integrations.call_logging is not installed: measuring inbound SMS instead")
    queue = new_queue("e2e")
    run = uuid.uuid4().hex[:8]
    latencies: list[float] = []
    with throwaway_database() as database_url:
        env = portal_env(database_url, broker_url=REDIS_URL, queue=queue)
        Portal(env=env, queue=queue, broker_url=REDIS_URL).setup()
        import requests

        from integrations.sandbox.generic_crm import GenericCrmSandbox
        from integrations.sandbox.recorder import RecorderSandbox
        from integrations.sandbox.sms import SmsProviderSandbox
        from tenants.models import Account, Organization
        from tests.support.processes import celery_worker

        account = Account.objects.create(name="Bench Reseller", slug=f"bench-{run}")
        org = Organization.objects.create(
            account=account, name="Bench Org", slug=f"bench-org-{run}", pbx_domain="bench.example"
        )

        def body_value(name: str, request: Any) -> str | None:
            body = request.json if isinstance(request.json, dict) else {}
            return str(body.get(name) or "") or None

        def activity_key(request: Any) -> str | None:
            if request.method == "POST" and request.path.rstrip("/").endswith("/activities"):
                return body_value("call_id", request)
            return None

        arrivals = Arrivals()
        crm = arrivals.server(GenericCrmSandbox, activity_key)
        sms = SmsProviderSandbox(port=0).start()
        recorder = arrivals.server(RecorderSandbox, lambda r: body_value("message", r))
        if mode == "call":
            _call_setup(org, crm.url, crm.api_key)
        else:
            _sms_setup(org, recorder.url, sms.url + "/webhook")
        log(f"# mode {mode}, database {database_url.split('@')[-1]}, queue {queue}")
        sent_at: dict[str, float] = {}
        try:
            with (
                gunicorn(env, workers=2) as base,
                celery_worker(broker_url=REDIS_URL, queue=queue, extra_env=env),
            ):
                session = requests.Session()
                headers_call = {
                    "Content-Type": "application/json",
                    "X-Patchbay-Secret": org.webhook_secret,
                }

                def post(index: int) -> tuple[str, int]:
                    key = f"{run}-{index}"
                    if mode == "call":
                        body = {
                            "event_id": key,
                            "call_id": key,
                            "direction": "inbound",
                            "status": "completed",
                            "caller_number": CALLER,
                            "called_number": SMS_NUMBER,
                            "start": "2025-01-01T10:00:00Z",
                            "answer": "2025-01-01T10:00:05Z",
                            "end": "2025-01-01T10:01:05Z",
                            "duration": 60,
                        }
                        url = f"{base}/api/v1/hooks/pbx/{org.webhook_key}/call"
                        headers = headers_call
                    else:
                        body = {
                            "method": "message",
                            "params": {"from": CALLER, "to": SMS_NUMBER, "content": key},
                        }
                        url = f"{base}/services/example-sms/a{account.pk}"
                        headers = {"Content-Type": "application/json"}
                    sent_at[key] = time.monotonic()
                    response = session.post(url, data=json.dumps(body), headers=headers, timeout=30)
                    return key, response.status_code

                arrived = arrivals.seen

                interval = 1.0 / args.rate
                start = time.monotonic()
                pending: set[str] = set()
                for index in range(args.events):
                    due = start + index * interval
                    while (now := time.monotonic()) < due:
                        time.sleep(min(0.002, due - now))
                        for key in list(pending):
                            if (at := arrived(key)) is not None:
                                latencies.append((at - sent_at[key]) * 1000)
                                pending.discard(key)
                    key, status = post(index)
                    if status not in (200, 202):
                        raise SystemExit(f"event {index}: HTTP {status}")
                    pending.add(key)
                deadline = time.monotonic() + args.timeout
                while pending and time.monotonic() < deadline:
                    for key in list(pending):
                        if (at := arrived(key)) is not None:
                            latencies.append((at - sent_at[key]) * 1000)
                            pending.discard(key)
                    time.sleep(0.002)
                if pending:
                    log(f"# {len(pending)} event(s) not delivered within {args.timeout:g} s")
        finally:
            recorder.stop()
            crm.stop()
            sms.stop()
            redis_forget_queue(REDIS_URL, queue)
            from django.db import connections

            connections.close_all()
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    log(f"{len(latencies)}/{args.events} events delivered at {args.rate:g}/s")
    print(
        f"RESULT end_to_end p50_ms={p50:.1f} p99_ms={p99:.1f} events={len(latencies)} mode={mode} "
        f"{backend_tags(database_url, broker=REDIS_URL)}"
    )
    return 0 if latencies else 1


if __name__ == "__main__":
    raise SystemExit(main())
