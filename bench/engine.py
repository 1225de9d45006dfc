"""Engine overhead: `SpecClient.call("FindContact")` against a plain `requests` GET.

Usage: ``python bench/engine.py [--calls N]``

Starts a threaded HTTP server on 127.0.0.1 answering a contact search the way a CRM does (a
few records, ``{"records": [...], "total": n}``), then times, in the same run and against the
same URL:

* engine: ``SpecClient.call("FindContact", {"phone": ...})`` with a small bearer-auth spec —
  render the request, send it through the engine's HTTP door (SSRF guard off for loopback,
  timeouts, redaction), map the response into records;
* raw: ``requests.Session().get(url, params=..., headers=...)``.

Rounds interleave the two (alternating which goes first) so machine noise hits both alike;
both warm up first (connection pools, caches). Medians are reported. The last line is

    RESULT engine ratio=<median engine / median raw, 2 decimals> calls=<N>

The engine is pure Python without Django: no settings are needed.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import requests

from integrations.engine.client import SpecClient
from integrations.engine.mapping import map_response
from integrations.engine.spec import load_spec

API_KEY = "bench-api-key"
PHONE = "+14155550100"
WARMUP_CALLS = 20

SPEC: dict[str, Any] = {
    "id": "bench_crm",
    "name": "Bench CRM",
    "class": "crm",
    "properties": [
        {"name": "Instance URL", "type": "url", "required": True},
        {"name": "API Key", "type": "secret", "required": True},
    ],
    "resource_url": "$Instance URL$/api/v1",
    "authentication": {"type": "bearer", "token": "$API Key$"},
    "API": {
        "FindContact": {
            "request_method": "GET",
            "request_path": "/contacts/search",
            "request_parameters": {"phone": "$phone$", "limit": 10},
            "response_map": {
                "records": [
                    {
                        "id": "$contact_id$",
                        "name": "$contact_name$",
                        "first_name": "$contact_first_name$",
                        "last_name": "$contact_last_name$",
                        "email": "$contact_email$",
                        "phone": "$contact_phone$",
                        "company": "$contact_company$",
                        "account": {"id": "$account_id$"},
                    }
                ]
            },
        }
    },
}


def _contact(index: int) -> dict[str, Any]:
    return {
        "id": f"c-{1000 + index}",
        "first_name": ["Jane", "John", "Maria"][index % 3],
        "last_name": ["Doe", "Smith", "Garcia"][index % 3],
        "name": ["Jane Doe", "John Smith", "Maria Garcia"][index % 3],
        "email": f"contact{index}@acme.example",
        "phone": PHONE,
        "mobile": "",
        "company": "Acme Corp",
        "account": {"id": "a-1", "name": "Acme Corp"},
        "owner": {"id": "u-1001", "name": "Alice Agent", "email": "alice@crm.example"},
        "tags": ["customer", "priority"],
        "created_at": "2024-01-10T09:00:00Z",
        "updated_at": "2024-06-01T10:00:00Z",
    }


# A realistic search answer: three matches with nested objects, about 1.5 kB.
RESPONSE_BODY = json.dumps(
    {"records": [_contact(i) for i in range(3)], "total": 3, "next": None}
).encode()


class _SearchHandler(BaseHTTPRequestHandler):
    # HTTP/1.1 with Content-Length: both clients keep their connection alive.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm meets the
    # client's delayed ACK and every response waits ~20-40 ms, which would swamp the timing.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        if not self.path.startswith("/api/v1/contacts/search"):
            self.send_error(404)
            return
        if self.headers.get("Authorization") != f"Bearer {API_KEY}":
            self.send_error(401)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(RESPONSE_BODY)))
        self.end_headers()
        self.wfile.write(RESPONSE_BODY)

    def log_message(self, format: str, *args: Any) -> None:
        return


def start_server() -> ThreadingHTTPServer:
    """A daemon-threaded search server on a free loopback port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SearchHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _timed(function: Callable[[], object]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def cpu_parts(calls: int) -> tuple[float, float]:
    """Median seconds of rendering the request (dry run) and of mapping the response alone."""
    spec = load_spec(SPEC)
    client = SpecClient(spec, properties={"Instance URL": "http://127.0.0.1:9", "API Key": API_KEY})
    method = spec.methods["FindContact"]
    assert isinstance(method, dict)
    render = [_timed(lambda: client.dry_run("FindContact", {"phone": PHONE})) for _ in range(calls)]
    mapping = [
        _timed(lambda: map_response(spec, method, body=RESPONSE_BODY, context={"phone": PHONE}))
        for _ in range(calls)
    ]
    return statistics.median(render), statistics.median(mapping)


def run(calls: int) -> tuple[list[float], list[float]]:
    """Per-call seconds of the engine and of the raw GET, `calls` interleaved rounds each."""
    server = start_server()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        client = SpecClient(
            load_spec(SPEC),
            properties={"Instance URL": base, "API Key": API_KEY},
            allow_private_networks=True,
        )
        session = requests.Session()
        url = f"{base}/api/v1/contacts/search"
        headers = {"Authorization": f"Bearer {API_KEY}"}

        def engine_call() -> None:
            result = client.call("FindContact", {"phone": PHONE})
            if len(result.records) != 3:
                raise RuntimeError(f"engine mapped {len(result.records)} records, expected 3")

        def raw_call() -> None:
            response = session.get(url, params={"phone": PHONE, "limit": 10}, headers=headers)
            response.raise_for_status()

        for _ in range(WARMUP_CALLS):
            engine_call()
            raw_call()
        engine: list[float] = []
        raw: list[float] = []
        for round_number in range(calls):
            if round_number % 2:
                raw.append(_timed(raw_call))
                engine.append(_timed(engine_call))
            else:
                engine.append(_timed(engine_call))
                raw.append(_timed(raw_call))
        session.close()
        return engine, raw
    finally:
        server.shutdown()
        server.server_close()


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--calls", type=int, default=1000, help="timed calls of each kind (default 1000)"
    )
    args = parser.parse_args(argv)
    if args.calls < 1:
        parser.error("--calls must be at least 1")

    engine, raw = run(args.calls)
    engine_median = statistics.median(engine)
    raw_median = statistics.median(raw)
    ratio = engine_median / raw_median
    print(
        f"FindContact via SpecClient.call (render + send + map), {len(RESPONSE_BODY)} byte "
        f"response with 3 records, {args.calls} interleaved rounds after {WARMUP_CALLS} warm-up"
    )
    print(f"engine median {_ms(engine_median)}  (min {_ms(min(engine))})")
    print(f"raw    median {_ms(raw_median)}  (min {_ms(min(raw))})  requests.Session().get")
    render, mapping = cpu_parts(min(args.calls, 200))
    print(
        f"engine overhead per call {_ms(engine_median - raw_median)}; of which render "
        f"{_ms(render)}, map {_ms(mapping)} (measured alone)"
    )
    print(f"RESULT engine ratio={ratio:.2f} calls={args.calls}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
