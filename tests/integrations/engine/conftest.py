"""Fixtures for the HTTP-layer and authentication tests: a tiny programmable HTTP server.

`local_server` listens on 127.0.0.1 (a random port) and answers each path with a handler the
test registers. It records every request and counts hits per path. Request bodies are read in
chunks (Content-Length or chunked); a route can stream the body to a file instead of keeping it,
so a large upload is checked without the server holding it in memory.

These are unit-test fixtures for the engine's HTTP door; the imitations of real third parties
live in `integrations/sandbox/`.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest


@dataclass
class Received:
    """A request the server received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    body_size: int
    body_sha256: str

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, list[str]]:
        return urllib.parse.parse_qs(self.body.decode(), keep_blank_values=True)


@dataclass
class Reply:
    """What a handler answers. `delay` sleeps before answering."""

    status: int = 200
    body: bytes | str | dict | list | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    # False: no Content-Length; the body ends when the connection closes.
    send_length: bool = True


Handler = Callable[[Received], Reply]


class LocalServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 whose routes tests set with :meth:`route`."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Handler] = {}
        self.save_body_to: dict[str, Path] = {}
        self.received: list[Received] = []
        self.hits: Counter[str] = Counter()
        self._mutex = threading.Lock()
        server = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _chunks(self) -> Iterator[bytes]:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            return
                        remaining = size
                        while remaining:
                            data = self.rfile.read(min(remaining, 65536))
                            remaining -= len(data)
                            yield data
                        self.rfile.readline()
                remaining = int(self.headers.get("Content-Length") or 0)
                while remaining > 0:
                    data = self.rfile.read(min(remaining, 65536))
                    if not data:
                        return
                    remaining -= len(data)
                    yield data

            def _handle(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                digest = hashlib.sha256()
                size = 0
                kept: list[bytes] = []
                target = server.save_body_to.get(parts.path)
                sink = target.open("wb") if target else None
                try:
                    for chunk in self._chunks():
                        digest.update(chunk)
                        size += len(chunk)
                        if sink:
                            sink.write(chunk)
                        else:
                            kept.append(chunk)
                finally:
                    if sink:
                        sink.close()
                received = Received(
                    method=self.command,
                    path=parts.path,
                    query=urllib.parse.parse_qs(parts.query, keep_blank_values=True),
                    headers={k: v for k, v in self.headers.items()},
                    body=b"".join(kept),
                    body_size=size,
                    body_sha256=digest.hexdigest(),
                )
                with server._mutex:
                    server.received.append(received)
                    server.hits[parts.path] += 1
                handler = server.routes.get((self.command, parts.path)) or server.routes.get(
                    ("*", parts.path)
                )
                reply = handler(received) if handler else Reply(404, {"error": "no route"})
                if reply.delay:
                    time.sleep(reply.delay)
                body = reply.body
                headers = dict(reply.headers)
                if isinstance(body, dict | list):
                    body = json.dumps(body).encode()
                    headers.setdefault("Content-Type", "application/json")
                elif isinstance(body, str):
                    body = body.encode()
                body = body or b""
                try:
                    self.send_response(reply.status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    if not reply.send_length:
                        self.send_header("Connection", "close")
                        self.close_connection = True
                    elif "Content-Length" not in headers:
                        self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), RequestHandler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def route(self, method: str, path: str, handler: Handler | Reply) -> None:
        """Answer `method` `path` (method "*" for any) with `handler` or a fixed reply."""
        if isinstance(handler, Reply):
            fixed = handler
            self.routes[(method, path)] = lambda _request: fixed
        else:
            self.routes[(method, path)] = handler

    def sequence(self, method: str, path: str, replies: list[Reply]) -> None:
        """Answer successive requests with `replies`, repeating the last one."""
        remaining = list(replies)
        lock = threading.Lock()

        def handler(_request: Received) -> Reply:
            with lock:
                return remaining.pop(0) if len(remaining) > 1 else remaining[0]

        self.routes[(method, path)] = handler

    def requests_to(self, path: str) -> list[Received]:
        with self._mutex:
            return [r for r in self.received if r.path == path]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def local_server() -> Iterator[LocalServer]:
    server = LocalServer()
    yield server
    server.close()
