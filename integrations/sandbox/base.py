"""The common machinery of every sandbox server.

A sandbox server is a small HTTP server bound to the loopback interface that imitates one
third party (Zoho PhoneBridge, RingRx, a generic CRM, an SMS provider). Each imitation is a
subclass of :class:`SandboxServer` that declares its handlers with :func:`route`::

    class Echo(SandboxServer):
        name = "echo"

        @route("GET", "/things/<thing_id>")
        def thing_get(self, request: SandboxRequest, thing_id: str) -> SandboxResponse:
            return json_response({"id": thing_id})

The base class gives every imitation the same test tooling:

* every request it receives is recorded (:meth:`SandboxServer.requests_to`,
  :meth:`SandboxServer.last`, :meth:`SandboxServer.clear`);
* failures can be injected for the next requests to a path prefix
  (:meth:`SandboxServer.fail_next`, :meth:`SandboxServer.rate_limit_next`,
  :meth:`SandboxServer.delay_next`);
* a clock that tests can move forward (:meth:`SandboxServer.advance_clock`), so token
  expiry is tested without sleeping;
* the same controls over HTTP under ``/_sandbox/`` for people and out-of-process tests:
  ``GET /_sandbox/`` (what this server imitates and its routes), ``GET /_sandbox/requests``,
  ``GET /_sandbox/state``, ``POST /_sandbox/fail``, ``POST /_sandbox/rate_limit``,
  ``POST /_sandbox/delay``, ``POST /_sandbox/clock``, ``POST /_sandbox/config``,
  ``POST /_sandbox/clear`` and ``POST /_sandbox/reset``.

This module uses the standard library only: the sandbox must run without Django.
"""

from __future__ import annotations

import base64
import contextlib
import email.parser
import email.policy
import ipaddress
import json
import re
import secrets
import socket
import threading
import time
import traceback
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

ADMIN_PREFIX = "/_sandbox"

Handler = Callable[..., "SandboxResponse"]


# ---------------------------------------------------------------------------
# Requests and responses
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadedFile:
    """One part of a multipart body: a file when ``filename`` is set, a value otherwise."""

    name: str
    filename: str | None
    content_type: str
    content: bytes

    @property
    def size(self) -> int:
        """The number of bytes received for this part."""
        return len(self.content)


@dataclass
class SandboxRequest:
    """A request as the sandbox received it, with its body parsed when the type is known.

    ``query`` and ``form`` keep every value of a repeated key. ``json`` is the parsed body
    when the body was JSON (``None`` otherwise); ``form`` holds urlencoded fields and the
    non-file parts of a multipart body; ``files`` the file parts. ``injected`` names the
    failure injection that answered this request instead of its handler, if any.
    """

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    json: Any = None
    form: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, list[UploadedFile]] = field(default_factory=dict)
    parts: list[UploadedFile] = field(default_factory=list)
    time: float = 0.0
    raw_path: str = ""
    injected: str | None = None
    status: int | None = None

    def header(self, name: str, default: str | None = None) -> str | None:
        """The value of header ``name`` (case-insensitive), or ``default``."""
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return default

    def arg(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name`` from the form body, else the query, else ``default``."""
        if name in self.form:
            return self.form[name][0]
        if name in self.query:
            return self.query[name][0]
        return default

    def args(self) -> dict[str, str]:
        """Query and form fields merged (form wins), first value of each."""
        merged = {key: values[0] for key, values in self.query.items() if values}
        merged.update({key: values[0] for key, values in self.form.items() if values})
        return merged

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable view, as served by ``GET /_sandbox/requests``."""
        try:
            body_text: str | None = self.body.decode("utf-8")
            body_base64 = None
        except UnicodeDecodeError:
            body_text = None
            body_base64 = base64.b64encode(self.body).decode("ascii")
        return {
            "method": self.method,
            "path": self.path,
            "raw_path": self.raw_path,
            "query": self.query,
            "headers": self.headers,
            "body": body_text,
            "body_base64": body_base64,
            "json": self.json,
            "form": self.form,
            "files": {
                name: [
                    {"filename": f.filename, "content_type": f.content_type, "size": f.size}
                    for f in files
                ]
                for name, files in self.files.items()
            },
            "time": self.time,
            "injected": self.injected,
            "status": self.status,
        }


@dataclass
class SandboxResponse:
    """What a handler answers. ``body`` is sent as is; use the helpers below to build one."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class Answer(Exception):
    """Raised by a handler (or a helper it calls) to answer at once with ``response``."""

    def __init__(self, response: SandboxResponse) -> None:
        super().__init__(response.status)
        self.response = response


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> SandboxResponse:
    """A JSON response with ``Content-Type: application/json``."""
    all_headers = {"Content-Type": "application/json"}
    all_headers.update(headers or {})
    return SandboxResponse(status, json.dumps(data).encode("utf-8"), all_headers)


def html_response(html: str, status: int = 200) -> SandboxResponse:
    """An HTML page."""
    return SandboxResponse(
        status, html.encode("utf-8"), {"Content-Type": "text/html; charset=utf-8"}
    )


def redirect_response(location: str, status: int = 302) -> SandboxResponse:
    """A redirect to ``location``."""
    return SandboxResponse(status, b"", {"Location": location})


def empty_response(status: int = 204) -> SandboxResponse:
    """A response without a body (204 No Content by default)."""
    return SandboxResponse(status, b"", {})


# ---------------------------------------------------------------------------
# Body parsing
# ---------------------------------------------------------------------------


def parse_multipart(content_type: str, body: bytes) -> list[UploadedFile]:
    """Split a ``multipart/form-data`` body into its parts.

    Raises:
        ValueError: the body is not a multipart document with the given boundary.
    """
    if "boundary=" not in content_type:
        raise ValueError("multipart body without a boundary")
    document = b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(document)
    if not message.is_multipart():
        raise ValueError("body is not multipart")
    parts: list[UploadedFile] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name is None:
            continue
        filename = part.get_filename()
        payload = part.get_payload(decode=True) or b""
        parts.append(
            UploadedFile(
                name=str(name),
                filename=filename,
                content_type=part.get_content_type()
                if part.get("Content-Type")
                else ("application/octet-stream" if filename else "text/plain"),
                content=payload,
            )
        )
    return parts


def _parse_body(request: SandboxRequest) -> None:
    """Fill ``json``, ``form``, ``files`` and ``parts`` from the raw body (best effort)."""
    content_type = request.header("Content-Type", "") or ""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if not request.body:
        return
    if media_type == "application/json" or media_type.endswith("+json"):
        try:
            request.json = json.loads(request.body)
        except ValueError:
            request.json = None
    elif media_type == "application/x-www-form-urlencoded":
        request.form = urllib.parse.parse_qs(
            request.body.decode("utf-8", "replace"), keep_blank_values=True
        )
    elif media_type == "multipart/form-data":
        try:
            request.parts = parse_multipart(content_type, request.body)
        except ValueError:
            return
        for part in request.parts:
            if part.filename is None:
                request.form.setdefault(part.name, []).append(
                    part.content.decode("utf-8", "replace")
                )
            else:
                request.files.setdefault(part.name, []).append(part)


# ---------------------------------------------------------------------------
# Routing
# ---------------------------------------------------------------------------


def route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    """Declare a method of a :class:`SandboxServer` subclass as the handler of a route.

    ``pattern`` is a path where ``<name>`` matches one path segment and is passed to the
    handler as a keyword argument. A handler may carry several ``@route`` decorators.
    """

    def decorate(function: Handler) -> Handler:
        routes = list(getattr(function, "_sandbox_routes", []))
        routes.append((method.upper(), pattern))
        function._sandbox_routes = routes  # type: ignore[attr-defined]
        return function

    return decorate


@dataclass(frozen=True)
class Route:
    """A compiled route: a method, a path pattern and the bound handler."""

    method: str
    pattern: str
    regex: re.Pattern[str]
    handler: Handler


def _compile_pattern(pattern: str) -> re.Pattern[str]:
    parts = re.split(r"<([a-zA-Z_][a-zA-Z0-9_]*)>", pattern)
    regex = ""
    for index, part in enumerate(parts):
        regex += f"(?P<{part}>[^/]+)" if index % 2 else re.escape(part)
    return re.compile(f"^{regex}$")


# ---------------------------------------------------------------------------
# Failure injection
# ---------------------------------------------------------------------------


@dataclass
class Injection:
    """One armed failure: answer (or delay) the next ``times`` matching requests.

    ``times=None`` keeps the injection armed until :meth:`SandboxServer.reset` or
    ``clear_injections``.
    """

    kind: str  # "fail", "rate_limit" or "delay"
    path_prefix: str
    method: str | None = None
    times: int | None = 1
    status: int = 500
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def matches(self, method: str, path: str) -> bool:
        """Whether this injection applies to a request."""
        if self.times is not None and self.times <= 0:
            return False
        if self.method and self.method.upper() != method:
            return False
        return path.startswith(self.path_prefix)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable view."""
        return {
            "kind": self.kind,
            "path_prefix": self.path_prefix,
            "method": self.method,
            "times": self.times,
            "status": self.status,
            "seconds": self.seconds,
        }


# ---------------------------------------------------------------------------
# Loopback guard for the helpers that post to other servers
# ---------------------------------------------------------------------------


def require_loopback_url(url: str) -> None:
    """Refuse to send anything to a host that is not on the loopback interface.

    The sandbox is for tests and demos: it must never reach the internet.

    Raises:
        ValueError: ``url`` is not ``http(s)://`` on a loopback address or ``localhost``.
    """
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"sandbox refuses to post to {url!r}: not an http(s) URL")
    host = parsed.hostname
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ValueError(f"sandbox refuses to post to {url!r}: only loopback hosts are allowed")


def require_loopback_host(host: str) -> None:
    """Refuse to bind anywhere but the loopback interface.

    Raises:
        ValueError: ``host`` is not a loopback address or ``localhost``.
    """
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ValueError(f"sandbox servers bind loopback only; {host!r} is not a loopback address")


# ---------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # Never wait for handler threads on close: a client may hold a keep-alive connection.
    block_on_close = False
    allow_reuse_address = True
    sandbox: SandboxServer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def close_open_connections(self) -> None:
        """Cut every client connection still open (idle keep-alive ones included)."""
        with self.connections_lock:
            connections = list(self.open_connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Idle keep-alive connections are closed after this many seconds.
    timeout = 60
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.open_connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.open_connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet; the sandbox records requests instead."""
        if self.server.sandbox.verbose:
            super().log_message(format, *args)

    def _read_body(self) -> bytes:
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            chunks = []
            while True:
                size_line = self.rfile.readline().strip().split(b";", 1)[0]
                size = int(size_line or b"0", 16)
                if size == 0:
                    # Trailers end with an empty line.
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        body = self._read_body()
        response = self.server.sandbox.handle_raw(
            self.command, self.path, dict(self.headers.items()), body
        )
        self.send_response(response.status)
        headers = dict(response.headers)
        no_body = response.status in (204, 304) or self.command == "HEAD"
        for name, value in headers.items():
            self.send_header(name, value)
        if response.status not in (204, 304):
            self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if not no_body and response.body:
            self.wfile.write(response.body)

    def _safe_handle(self) -> None:
        try:
            self._handle()
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (a timeout test); nothing to answer.
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _safe_handle


class SandboxServer:
    """Base of every imitation: lifecycle, routing, recording, failure injection, admin API.

    Subclasses set ``name`` and ``description``, list the attribute names tests may change in
    ``tunables`` (restored by :meth:`reset`), seed their data in :meth:`reset_state`, and
    declare handlers with :func:`route`. Handlers run on the server's threads; mutate shared
    state under ``self.lock``.
    """

    name: ClassVar[str] = "sandbox"
    description: ClassVar[str] = "a sandbox server"
    tunables: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, verbose: bool = False) -> None:
        """Prepare the server; nothing listens until :meth:`start`.

        Args:
            host: a loopback address to bind (the sandbox never binds anything else).
            port: the port to bind, or 0 for a free one chosen by the system.
            verbose: log each request to stderr.

        Raises:
            ValueError: ``host`` is not a loopback address.
        """
        require_loopback_host(host)
        self.host = host
        self.port = port
        self.verbose = verbose
        self.lock = threading.RLock()
        self._requests: list[SandboxRequest] = []
        self._injections: list[Injection] = []
        self._clock_offset = 0.0
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._routes = self._collect_routes()
        self._tunable_defaults = {name: getattr(self, name) for name in self.tunables}
        self.reset_state()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> SandboxServer:
        """Bind and serve in a background daemon thread; returns ``self``."""
        if self._httpd is not None:
            return self
        httpd = _HTTPServer((self.host, self.port), _RequestHandler)
        httpd.sandbox = self
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sandbox-{self.name}-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd.close_open_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8101`` (no trailing slash)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def url_for(self, path: str) -> str:
        """An absolute URL on this server for ``path`` (which starts with ``/``)."""
        return self.url + path

    # -- state ---------------------------------------------------------------------------

    def reset_state(self) -> None:
        """(Re)create the imitation's data: seeded records, issued tokens, logs.

        Subclasses override this and call ``super().reset_state()``.
        """

    def state(self) -> dict[str, Any]:
        """A JSON-serializable dump of the imitation's data, served by ``/_sandbox/state``."""
        return {}

    def reset(self) -> None:
        """Forget requests, injections and clock moves, restore tunables and reseed data."""
        with self.lock:
            self._requests.clear()
            self._injections.clear()
            self._clock_offset = 0.0
            for name, value in self._tunable_defaults.items():
                setattr(self, name, value)
            self.reset_state()

    def configure(self, **values: Any) -> None:
        """Change tunables (``token_lifetime=5``); :meth:`reset` restores the defaults.

        Raises:
            ValueError: a name is not one of ``tunables``.
        """
        unknown = sorted(set(values) - set(self.tunables))
        if unknown:
            raise ValueError(
                f"{self.name} sandbox has no setting {', '.join(unknown)}; "
                f"settings: {', '.join(self.tunables) or 'none'}"
            )
        with self.lock:
            for name, value in values.items():
                setattr(self, name, value)

    # -- clock ---------------------------------------------------------------------------

    def now(self) -> float:
        """The sandbox's clock (Unix seconds): real time plus :meth:`advance_clock` moves."""
        return time.time() + self._clock_offset

    def advance_clock(self, seconds: float) -> None:
        """Move this server's clock forward, e.g. past a token's expiry."""
        with self.lock:
            self._clock_offset += seconds

    # -- recording -----------------------------------------------------------------------

    @property
    def requests(self) -> list[SandboxRequest]:
        """A copy of every recorded request, oldest first (admin requests excluded)."""
        with self.lock:
            return list(self._requests)

    def requests_to(self, path: str, method: str | None = None) -> list[SandboxRequest]:
        """Recorded requests to ``path`` (exact; a trailing ``*`` matches a prefix)."""
        with self.lock:
            found = list(self._requests)
        if path.endswith("*"):
            found = [r for r in found if r.path.startswith(path[:-1])]
        else:
            found = [r for r in found if r.path == path]
        if method:
            found = [r for r in found if r.method == method.upper()]
        return found

    def last(self, path: str | None = None, method: str | None = None) -> SandboxRequest | None:
        """The latest recorded request (to ``path``, see :meth:`requests_to`), or ``None``."""
        found = self.requests if path is None else self.requests_to(path, method)
        if path is None and method:
            found = [r for r in found if r.method == method.upper()]
        return found[-1] if found else None

    def clear(self) -> None:
        """Forget the recorded requests (state and injections are kept)."""
        with self.lock:
            self._requests.clear()

    # -- failure injection ---------------------------------------------------------------

    def fail_next(
        self,
        path_prefix: str,
        status: int = 500,
        times: int | None = 1,
        body: Any = None,
        headers: dict[str, str] | None = None,
        method: str | None = None,
    ) -> None:
        """Answer the next ``times`` requests under ``path_prefix`` with ``status``.

        ``body`` may be bytes, a string or a JSON-serializable value; by default the
        imitation's own error body for that status (:meth:`failure_body`).
        """
        self._arm(
            Injection(
                "fail",
                path_prefix,
                method=method,
                times=times,
                status=status,
                body=body,
                headers=dict(headers or {}),
            )
        )

    def rate_limit_next(
        self,
        path_prefix: str,
        retry_after: int = 2,
        times: int | None = 1,
        method: str | None = None,
        body: Any = None,
    ) -> None:
        """Answer the next ``times`` requests under ``path_prefix`` with 429 and ``Retry-After``."""
        self._arm(
            Injection(
                "rate_limit",
                path_prefix,
                method=method,
                times=times,
                status=429,
                body=body,
                headers={"Retry-After": str(retry_after)},
            )
        )

    def delay_next(
        self,
        path_prefix: str,
        seconds: float,
        times: int | None = 1,
        method: str | None = None,
    ) -> None:
        """Sleep ``seconds`` before handling the next ``times`` requests under ``path_prefix``."""
        self._arm(Injection("delay", path_prefix, method=method, times=times, seconds=seconds))

    def clear_injections(self) -> None:
        """Disarm every injection."""
        with self.lock:
            self._injections.clear()

    def _arm(self, injection: Injection) -> None:
        with self.lock:
            self._injections.append(injection)

    def failure_body(self, status: int) -> Any:
        """The body of an injected failure when the test gives none. Imitations override it."""
        return {"error": {"code": status, "message": HTTPStatus(status).phrase + " (injected)"}}

    def _take_injections(self, method: str, path: str) -> tuple[float, Injection | None]:
        """Consume the matching delays (summed) and the first matching fail/rate limit."""
        delay = 0.0
        answer: Injection | None = None
        with self.lock:
            for injection in self._injections:
                if not injection.matches(method, path):
                    continue
                if injection.kind == "delay":
                    delay += injection.seconds
                elif answer is None:
                    answer = injection
                else:
                    continue
                if injection.times is not None:
                    injection.times -= 1
            self._injections = [i for i in self._injections if i.times is None or i.times > 0]
        return delay, answer

    def _injected_response(self, injection: Injection) -> SandboxResponse:
        body = injection.body
        if body is None:
            body = self.failure_body(injection.status)
        headers = dict(injection.headers)
        if isinstance(body, bytes):
            return SandboxResponse(injection.status, body, headers)
        if isinstance(body, str):
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
            return SandboxResponse(injection.status, body.encode("utf-8"), headers)
        return json_response(body, injection.status, headers)

    # -- dispatch ------------------------------------------------------------------------

    def _collect_routes(self) -> list[Route]:
        routes: list[Route] = []
        seen: set[str] = set()
        for klass in type(self).__mro__:
            for attribute, value in vars(klass).items():
                if attribute in seen or not hasattr(value, "_sandbox_routes"):
                    continue
                seen.add(attribute)
                handler = getattr(self, attribute)
                for method, pattern in value._sandbox_routes:
                    routes.append(Route(method, pattern, _compile_pattern(pattern), handler))
        # Literal paths win over patterns (``/contacts/search`` before ``/contacts/<id>``).
        routes.sort(key=lambda r: r.pattern.count("<"))
        return routes

    @property
    def routes(self) -> list[tuple[str, str]]:
        """Every (method, pattern) this imitation answers, admin routes excluded."""
        return sorted(
            {(r.method, r.pattern) for r in self._routes if not r.pattern.startswith(ADMIN_PREFIX)},
            key=lambda item: (item[1], item[0]),
        )

    def handle_raw(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> SandboxResponse:
        """Handle one HTTP request: admin routes, then record, injections, routing."""
        split = urllib.parse.urlsplit(raw_path)
        path = urllib.parse.unquote(split.path) or "/"
        request = SandboxRequest(
            method=method.upper(),
            path=path,
            query=urllib.parse.parse_qs(split.query, keep_blank_values=True),
            headers=headers,
            body=body,
            time=self.now(),
            raw_path=raw_path,
        )
        _parse_body(request)
        is_admin = path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/")
        if not is_admin:
            with self.lock:
                self._requests.append(request)
            delay, injection = self._take_injections(request.method, path)
            if delay:
                time.sleep(delay)
            if injection is not None:
                request.injected = injection.kind
                response = self._injected_response(injection)
                request.status = response.status
                return response
        response = self._dispatch(request)
        request.status = response.status
        return response

    def _dispatch(self, request: SandboxRequest) -> SandboxResponse:
        allowed: list[str] = []
        for candidate in self._routes:
            match = candidate.regex.match(request.path)
            if match is None:
                continue
            if candidate.method != request.method:
                allowed.append(candidate.method)
                continue
            try:
                return candidate.handler(request, **match.groupdict())
            except Answer as answer:
                return answer.response
            except Exception as error:  # a sandbox bug must still answer
                traceback.print_exc()
                return self.handler_crashed(request, error)
        if allowed:
            return self.method_not_allowed(request, sorted(set(allowed)))
        return self.not_found(request)

    def not_found(self, request: SandboxRequest) -> SandboxResponse:
        """The answer for a path no route matches. Imitations override it for their shape."""
        return json_response(
            {
                "error": {
                    "code": "not_found",
                    "message": f"no route {request.method} {request.path}",
                }
            },
            404,
        )

    def method_not_allowed(self, request: SandboxRequest, allowed: list[str]) -> SandboxResponse:
        """The answer for a known path with an unsupported method."""
        return json_response(
            {
                "error": {
                    "code": "method_not_allowed",
                    "message": f"{request.method} not allowed on {request.path}",
                }
            },
            405,
            {"Allow": ", ".join(allowed)},
        )

    def handler_crashed(self, request: SandboxRequest, error: Exception) -> SandboxResponse:
        """The answer when a handler raised: a 500 naming the sandbox bug."""
        return json_response(
            {"error": {"code": "sandbox_bug", "message": f"{type(error).__name__}: {error}"}}, 500
        )

    # -- admin API -----------------------------------------------------------------------

    @route("GET", ADMIN_PREFIX)
    @route("GET", ADMIN_PREFIX + "/")
    def _admin_index(self, request: SandboxRequest) -> SandboxResponse:
        return json_response(
            {
                "name": self.name,
                "description": self.description,
                "url": self.url,
                "routes": [{"method": m, "path": p} for m, p in self.routes],
                "settings": {name: getattr(self, name) for name in self.tunables},
                "injections": [i.to_dict() for i in self._injections],
                "clock_offset": self._clock_offset,
            }
        )

    @route("GET", ADMIN_PREFIX + "/requests")
    def _admin_requests(self, request: SandboxRequest) -> SandboxResponse:
        path = request.arg("path")
        method = request.arg("method")
        found = self.requests if path is None else self.requests_to(path, method)
        return json_response({"requests": [r.to_dict() for r in found]})

    @route("GET", ADMIN_PREFIX + "/state")
    def _admin_state(self, request: SandboxRequest) -> SandboxResponse:
        with self.lock:
            return json_response(self.state())

    @route("POST", ADMIN_PREFIX + "/reset")
    def _admin_reset(self, request: SandboxRequest) -> SandboxResponse:
        self.reset()
        return json_response({"status": "reset"})

    @route("POST", ADMIN_PREFIX + "/clear")
    def _admin_clear(self, request: SandboxRequest) -> SandboxResponse:
        self.clear()
        return json_response({"status": "cleared"})

    def _admin_body(self, request: SandboxRequest) -> dict[str, Any]:
        if isinstance(request.json, dict):
            return request.json
        return request.args()

    @route("POST", ADMIN_PREFIX + "/fail")
    def _admin_fail(self, request: SandboxRequest) -> SandboxResponse:
        data = self._admin_body(request)
        if "path" not in data:
            return json_response({"error": {"code": "missing", "message": "path is required"}}, 400)
        self.fail_next(
            str(data["path"]),
            status=int(data.get("status", 500)),
            times=_admin_times(data),
            body=data.get("body"),
            headers=data.get("headers") or None,
            method=data.get("method"),
        )
        return json_response({"status": "armed"})

    @route("POST", ADMIN_PREFIX + "/rate_limit")
    def _admin_rate_limit(self, request: SandboxRequest) -> SandboxResponse:
        data = self._admin_body(request)
        if "path" not in data:
            return json_response({"error": {"code": "missing", "message": "path is required"}}, 400)
        self.rate_limit_next(
            str(data["path"]),
            retry_after=int(data.get("retry_after", 2)),
            times=_admin_times(data),
            method=data.get("method"),
        )
        return json_response({"status": "armed"})

    @route("POST", ADMIN_PREFIX + "/delay")
    def _admin_delay(self, request: SandboxRequest) -> SandboxResponse:
        data = self._admin_body(request)
        if "path" not in data or "seconds" not in data:
            return json_response(
                {"error": {"code": "missing", "message": "path and seconds are required"}}, 400
            )
        self.delay_next(
            str(data["path"]),
            float(data["seconds"]),
            times=_admin_times(data),
            method=data.get("method"),
        )
        return json_response({"status": "armed"})

    @route("POST", ADMIN_PREFIX + "/clock")
    def _admin_clock(self, request: SandboxRequest) -> SandboxResponse:
        data = self._admin_body(request)
        self.advance_clock(float(data.get("advance", 0)))
        return json_response({"now": self.now(), "clock_offset": self._clock_offset})

    @route("POST", ADMIN_PREFIX + "/config")
    def _admin_config(self, request: SandboxRequest) -> SandboxResponse:
        data = self._admin_body(request)
        try:
            self.configure(**data)
        except ValueError as error:
            return json_response({"error": {"code": "unknown_setting", "message": str(error)}}, 400)
        return json_response({name: getattr(self, name) for name in self.tunables})


def _admin_times(data: dict[str, Any]) -> int | None:
    """``times`` from an admin request: 1 when absent, ``None`` (until reset) when null."""
    if "times" not in data:
        return 1
    return None if data["times"] is None else int(data["times"])


def iter_digits(value: str) -> Iterator[str]:
    """The digits of ``value`` (a helper for phone matching)."""
    return (character for character in value if character.isdigit())


def phone_digits(value: str) -> str:
    """Only the digits of a phone number, with an international ``00`` prefix removed."""
    digits = "".join(iter_digits(value))
    return digits[2:] if digits.startswith("00") else digits


def phones_match(stored: str, wanted: str) -> bool:
    """Lenient phone comparison: same digits, or same last ten digits when both have ten+.

    This is how CRMs with fuzzy phone search (Zoho's caller lookup) behave; the generic CRM
    deliberately does *not* use it, so a spec's ``phone_formats`` matter there.
    """
    a, b = phone_digits(stored), phone_digits(wanted)
    if not a or not b:
        return False
    if a == b:
        return True
    return len(a) >= 10 and len(b) >= 10 and a[-10:] == b[-10:]


def new_id(prefix: str = "") -> str:
    """A random identifier (hex), optionally prefixed."""
    return prefix + secrets.token_hex(8)
