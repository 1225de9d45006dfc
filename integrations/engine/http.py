"""The one door for outbound HTTP.

Every request the engine makes to a third party (CRM, SMS provider, OAuth token endpoint, a
recording fetched to be uploaded) goes through :class:`HttpSession`, which:

* sets a connect and a read timeout on every call, and bounds the whole response time;
* refuses private, loopback, link-local, multicast, reserved and cloud-metadata addresses unless
  ``allow_private_networks`` is set. The host is resolved once, the address checked, and the
  connection made to that pinned address (requests-hardened), so DNS rebinding cannot swap in an
  internal address between the check and the connect;
* never follows redirects: a 3xx is an error naming the new location (unless the caller lists it
  in ``success_codes``), because a redirect could point at an internal address or forward our
  credentials to another host;
* treats an error answer the request lists in ``accept_errors`` (a status, optionally with a text
  the body must contain) as a success that maps nothing: no error, no retry;
* caps the response size, reading it as a stream and stopping past the cap;
* retries connection errors, timeouts and 5xx with exponential backoff and full jitter for
  idempotent methods (and POST/PATCH only when the request says it is ``retry_safe``), honours
  ``Retry-After`` on 429 for any method, and never retries other 4xx;
* turns every failure into an :class:`IntegrationError` whose message a person can act on and
  which never contains a secret;
* streams multipart uploads (a local file or a URL fetched through this same guarded session), so
  a recording is never held whole in memory;
* reports every attempt to ``on_attempt`` (the portal's delivery log).

Nothing here imports Django: configuration comes in through the constructor.
"""

from __future__ import annotations

import contextlib
import email.utils
import http.cookiejar
import ipaddress
import json
import mimetypes
import os
import random
import re
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests
import requests.auth
import urllib3.exceptions
from requests.structures import CaseInsensitiveDict
from requests_hardened import Config as HardenedConfig
from requests_hardened import HTTPSession as HardenedSession
from requests_hardened.ip_filter import InvalidIPAddress
from requests_hardened.ip_filter_adapter import IPFilterAdapter

from integrations.engine.errors import IntegrationError

__all__ = [
    "IDEMPOTENT_METHODS",
    "REDACTED",
    "AttemptRecord",
    "HttpResponse",
    "HttpSession",
    "MultipartPartLike",
    "OutboundRequest",
    "RequestLike",
    "ResponseTooLarge",
    "redact",
]

REDACTED = "[redacted]"

#: Methods that may be repeated without changing the result (RFC 9110 9.2.2).
IDEMPOTENT_METHODS = frozenset({"GET", "PUT", "DELETE", "HEAD", "OPTIONS"})

# Keys whose values are secrets wherever they appear in a logged JSON or form body, even when the
# caller did not know the value in advance (a token endpoint's response carries fresh tokens).
SENSITIVE_KEYS = frozenset(
    {
        "access_token",
        "refresh_token",
        "id_token",
        "client_secret",
        "password",
        "secret",
        "api_key",
        "apikey",
        "token",
        "code",
        "authorization",
    }
)

# Addresses refused even though Python's `is_private` misses them on some versions, plus the
# cloud metadata endpoints that are the usual SSRF target.
_METADATA_ADDRESSES = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack
        ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    }
)

_BODY_EXCERPT_CHARS = 2000
_ERROR_EXCERPT_CHARS = 200
_CHUNK_BYTES = 64 * 1024
_PRIVATE_NETWORKS_SETTING = "OUTBOUND_ALLOW_PRIVATE_NETWORKS"


# ---------------------------------------------------------------------------
# The request the engine hands us
# ---------------------------------------------------------------------------


class MultipartPartLike(Protocol):
    """One part of a multipart body: a `value`, or a `file` (a local path or an http(s) URL)."""

    name: str
    value: Any
    file: str | None
    filename: str | None
    content_type: str | None


class RequestLike(Protocol):
    """What :meth:`HttpSession.send` needs from a request (the engine's `RenderedRequest`).

    The body is at most one of `json_body`, `form`, `multipart`, an optional `text_body`
    attribute (sent as UTF-8 with `content_type`, default text/plain) or an optional `body_file`
    attribute (a local file path streamed as the whole body with `content_type`, default
    guessed from the name; a voicemail or fax forwarded as RingRx sends it). An optional
    `accept_errors` attribute lists error answers that count as success (see
    :class:`OutboundRequest`); it is read with getattr, so a request without it still works.
    So is an optional `redact_response_keys`: keys whose values are masked in the logged
    response (a secret the response carries, captured by the spec).
    """

    http_method: str
    url: str
    headers: dict[str, str]
    query: list[tuple[str, str]]
    content_type: str | None
    json_body: Any | None
    form: list[tuple[str, str]] | None
    multipart: list[Any] | None
    timeout: float | None
    success_codes: list[int] | None
    retry_safe: bool
    redact: set[str]


@dataclass
class OutboundRequest:
    """A plain request, for callers that are not spec methods (token endpoints, file fetches).

    It has the same attributes as the engine's `RenderedRequest`, so either can be sent.
    `accept_errors` holds items ``{"status": 403, "body_contains": "PBX_ALREADY_ENABLED"}``
    (`body_contains` optional): a response with that status (whose body contains that text)
    is a success that maps nothing, neither an error nor retried. `redact_response_keys` names
    keys whose values are masked in the logged response (secrets the response carries).
    """

    http_method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    query: list[tuple[str, str]] = field(default_factory=list)
    content_type: str | None = None
    json_body: Any | None = None
    form: list[tuple[str, str]] | None = None
    multipart: list[Any] | None = None
    text_body: str | None = None
    body_file: str | None = None
    timeout: float | None = None
    success_codes: list[int] | None = None
    retry_safe: bool = False
    redact: set[str] = field(default_factory=set)
    accept_errors: list[Mapping[str, Any]] = field(default_factory=list)
    redact_response_keys: frozenset[str] = frozenset()


# ---------------------------------------------------------------------------
# What we hand back
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AttemptRecord:
    """One attempt at a request, as the delivery log stores it. Contains no secret."""

    method_name: str
    http_method: str
    url_redacted: str
    status: int | None
    duration_ms: float
    attempt: int
    error: str | None
    request_body_redacted: str | None
    response_body_excerpt: str | None


@dataclass
class HttpResponse:
    """A successful response, read whole (within the size cap).

    `accepted_error` is True when the status is an error the request listed in
    `accept_errors`: the call succeeded, but the body is an error answer and maps nothing.
    """

    status: int
    headers: CaseInsensitiveDict[str]
    content: bytes
    elapsed: float
    attempts: int
    url: str = ""
    accepted_error: bool = False

    @property
    def text(self) -> str:
        """The body decoded as UTF-8 (undecodable bytes replaced)."""
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any | None:
        """The body parsed as JSON, or None when the body is empty or not JSON.

        A third party answering 200 with an HTML page or 204 with nothing is not an error here;
        the mapping simply captures nothing.
        """
        if not self.content.strip():
            return None
        try:
            return json.loads(self.content)
        except ValueError:
            return None


# ---------------------------------------------------------------------------
# Redaction
# ---------------------------------------------------------------------------


def _encoded_forms(secret: str) -> set[str]:
    forms = {
        secret,
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote(secret, safe="/"),
        urllib.parse.quote_plus(secret),
        urllib.parse.quote_plus(secret, safe="/"),
        json.dumps(secret)[1:-1],
    }
    # Percent-escapes may be written in lower case by some encoders.
    forms |= {re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), f) for f in forms}
    return {f for f in forms if f}


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Return `text` with every secret replaced by ``[redacted]``.

    A secret is replaced in its raw form and in its percent-encoded (path, query, form; upper- or
    lower-case escapes) and JSON-escaped forms, longest first, so a secret inside a URL query
    string or a logged body disappears too. Empty secrets are ignored.
    """
    if not text:
        return text
    forms: set[str] = set()
    for secret in secrets:
        if secret:
            forms |= _encoded_forms(str(secret))
    if not forms:
        return text
    # One pass, longest form first, so a replacement is never itself searched again.
    pattern = "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True))
    return re.sub(pattern, REDACTED, text)


# In a response, `code` is an error code ("validation_error"), not an authorization code:
# keep it, so the person reading the log sees why the call failed.
_RESPONSE_SENSITIVE_KEYS = SENSITIVE_KEYS - {"code"}


def _redact_structure(value: Any, keys: frozenset[str] = SENSITIVE_KEYS) -> Any:
    """Replace values of well-known secret keys (`access_token`, `password`…) in parsed JSON."""
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if str(k).lower() in keys else _redact_structure(v, keys))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_redact_structure(v, keys) for v in value]
    return value


def _redact_pairs(pairs: Iterable[tuple[str, Any]]) -> list[tuple[str, Any]]:
    return [(k, REDACTED if str(k).lower() in SENSITIVE_KEYS else v) for k, v in pairs]


def _redact_url(url: str, secrets: Iterable[str]) -> str:
    """`url` with secrets and the values of well-known secret query keys redacted."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return redact(url, secrets)
    if parts.password:
        netloc = parts.netloc.rsplit("@", 1)
        user = netloc[0].split(":", 1)[0]
        parts = parts._replace(netloc=f"{user}:{REDACTED}@{netloc[1]}")
        url = urllib.parse.urlunsplit(parts)
    if parts.query:
        pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        if any(k.lower() in SENSITIVE_KEYS for k, _ in pairs):
            query = urllib.parse.urlencode(_redact_pairs(pairs), safe="[]")
            url = urllib.parse.urlunsplit(parts._replace(query=query))
    return redact(url, secrets)


def _excerpt(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _response_keys(request: RequestLike) -> frozenset[str]:
    """Keys masked in a logged response: the well-known ones and those the request names."""
    extra = getattr(request, "redact_response_keys", None) or ()
    return _RESPONSE_SENSITIVE_KEYS | {str(k).lower() for k in extra}


def _body_excerpt(
    content: bytes,
    secrets: Iterable[str],
    limit: int = _BODY_EXCERPT_CHARS,
    keys: frozenset[str] = _RESPONSE_SENSITIVE_KEYS,
) -> str:
    """A redacted, shortened rendering of a response body for logs and error messages."""
    text = content[: limit * 4].decode("utf-8", errors="replace")
    with contextlib.suppress(ValueError):
        text = json.dumps(_redact_structure(json.loads(text), keys), ensure_ascii=False)
    return _excerpt(redact(text, secrets), limit)


# ---------------------------------------------------------------------------
# SSRF guard
# ---------------------------------------------------------------------------


class _GuardedAdapter(IPFilterAdapter):
    """requests-hardened's adapter (resolve once, refuse private/loopback, pin the address),
    plus refusal of reserved, unspecified, link-local, site-local and metadata addresses that
    some Python versions do not count as private."""

    def build_connection_pool_key_attributes(self, request, verify, cert=None):  # type: ignore[no-untyped-def]
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert
        )
        pinned = ipaddress.ip_address(str(host_params["host"]).strip("[]"))
        if isinstance(pinned, ipaddress.IPv6Address) and pinned.ipv4_mapped is not None:
            pinned = pinned.ipv4_mapped
        if (
            pinned in _METADATA_ADDRESSES
            or pinned.is_reserved
            or pinned.is_unspecified
            or pinned.is_link_local
            or (isinstance(pinned, ipaddress.IPv6Address) and pinned.is_site_local)
        ):
            raise InvalidIPAddress(pinned)
        return host_params, pool_kwargs


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    """One session serves many installations: a cookie set by one tenant's CRM must never be
    sent on another's request, so no cookie is ever stored."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


# ---------------------------------------------------------------------------
# Streaming multipart
# ---------------------------------------------------------------------------


class _MultipartStream:
    """A multipart/form-data body produced piece by piece while it is sent.

    It is file-like (`read(n)`) so requests and urllib3 send it in blocks. When every part's
    length is known (values, local files, URLs that declare Content-Length), `len()` is the exact
    total and a Content-Length header is sent; otherwise `len()` is 0 and requests falls back to
    chunked transfer encoding.
    """

    def __init__(self, segments: list[tuple[int | None, Callable[[], Iterator[bytes]]]]) -> None:
        self._segments = segments
        lengths = [n for n, _ in segments]
        self._length = 0 if any(n is None for n in lengths) else sum(n or 0 for n in lengths)
        self._chunks = self._generate()
        self._buffer = b""
        self.bytes_sent = 0

    def _generate(self) -> Iterator[bytes]:
        for _, produce in self._segments:
            yield from produce()

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(_CHUNK_BYTES):
            yield chunk

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = _CHUNK_BYTES
        while len(self._buffer) < size:
            try:
                self._buffer += next(self._chunks)
            except StopIteration:
                break
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        self.bytes_sent += len(out)
        return out


def _quote_header_param(value: str) -> str:
    # RFC 7578 4.2: names and filenames are quoted strings; escape quotes and drop newlines.
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "").replace("\n", "")


def _file_reader(path: str) -> Callable[[], Iterator[bytes]]:
    def produce() -> Iterator[bytes]:
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK_BYTES):
                yield chunk

    return produce


# ---------------------------------------------------------------------------
# The session
# ---------------------------------------------------------------------------


class _AttemptFailure(Exception):
    """Internal: one attempt failed; carries the error and whether another attempt may help."""

    def __init__(
        self,
        error: IntegrationError,
        *,
        retryable: bool,
        delay: float | None = None,
        status: int | None = None,
        body_excerpt: str | None = None,
    ) -> None:
        super().__init__(error.message)
        self.error = error
        self.retryable = retryable
        self.delay = delay
        self.status = status
        self.body_excerpt = body_excerpt


class ResponseTooLarge(IntegrationError):
    """A response passed the session's `max_response_bytes`; reading it stopped there."""


class HttpSession:
    """The engine's HTTP client. Thread-safe; one instance can serve every installation.

    Args:
        allow_private_networks: allow private, loopback and link-local addresses (the
            OUTBOUND_ALLOW_PRIVATE_NETWORKS setting; tests and the local demo only).
        user_agent: sent on every request.
        default_timeout: seconds for connecting and for each read when the request sets none;
            the whole response must also arrive within three times the timeout.
        max_response_bytes: a response body larger than this is refused (IntegrationError).
        max_upload_bytes: a file fetched from a URL to be uploaded may not exceed this.
        max_attempts: attempts per request, the first included.
        backoff_base, backoff_max: exponential backoff with full jitter: before attempt n+1 we
            sleep a random time in [0, min(backoff_max, backoff_base * 2**(n-1))]. A Retry-After
            longer than backoff_max is not slept: the error is raised with `retry_after` set so
            the calling task can reschedule itself.
        sleep: how to wait between attempts (tests pass a recorder).
        on_attempt: called with an :class:`AttemptRecord` after every attempt.
    """

    def __init__(
        self,
        *,
        allow_private_networks: bool = False,
        user_agent: str = "Patchbay/1.0",
        default_timeout: float = 10.0,
        max_response_bytes: int = 5_000_000,
        max_upload_bytes: int = 200_000_000,
        max_attempts: int = 3,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        on_attempt: Callable[[AttemptRecord], None] | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.allow_private_networks = allow_private_networks
        self.user_agent = user_agent
        self.default_timeout = default_timeout
        self.max_response_bytes = max_response_bytes
        self.max_upload_bytes = max_upload_bytes
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.sleep = sleep
        self.on_attempt = on_attempt
        self._random = random.Random()
        # requests.Session is not documented as thread-safe: one per thread, each with its pool.
        self._local = threading.local()

    # -- the underlying requests session -------------------------------------------------

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            config = HardenedConfig(
                ip_filter_enable=not self.allow_private_networks,
                ip_filter_allow_loopback_ips=False,
                never_redirect=True,
                default_timeout=(self.default_timeout, self.default_timeout),
                user_agent_override=self.user_agent,
            )
            session = HardenedSession(config)
            if not self.allow_private_networks:
                session.mount("http://", _GuardedAdapter(is_https_proto=False))
                session.mount("https://", _GuardedAdapter(is_https_proto=True))
            # No proxies, .netrc credentials or CA bundles from the environment: what is sent
            # and where must not depend on the worker's shell.
            session.trust_env = False
            session.cookies.set_policy(_NoCookies())
            self._local.session = session
        return session

    def close(self) -> None:
        """Close the calling thread's connection pool (other threads keep theirs)."""
        session = getattr(self._local, "session", None)
        if session is not None:
            session.close()
            self._local.session = None

    # -- public API -----------------------------------------------------------------------

    def send(
        self,
        request: RequestLike,
        *,
        method_name: str,
        auth: requests.auth.AuthBase | None = None,
    ) -> HttpResponse:
        """Send `request`, retrying as the policy allows, and return the successful response.

        `method_name` is the spec method ("FindContact") used in messages and the delivery log.
        `auth` is applied to every attempt (so a token refreshed between attempts is used).

        Success is a 2xx status, or one of `request.success_codes` when given, or an error
        answer matching an item of `request.accept_errors` (then `accepted_error` is True).

        Raises:
            IntegrationError: the call failed. `status` is the HTTP status if one was received;
                `permanent` is False for connection errors, timeouts, 5xx and 429; `retry_after`
                is set when the third party asked us to wait; `url` is redacted.
        """
        http_method = request.http_method.upper()
        secrets = {s for s in (request.redact or set()) if s}
        may_retry_unsafe = http_method in IDEMPOTENT_METHODS or bool(request.retry_safe)
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._attempt(
                    request, http_method, method_name, auth, secrets, attempt, may_retry_unsafe
                )
            except _AttemptFailure as failure:
                error = failure.error
                last_attempt = attempt >= self.max_attempts
                if not failure.retryable or last_attempt:
                    if failure.retryable and last_attempt and attempt > 1:
                        error.message = error.args[0] + f" (gave up after {attempt} attempts)"
                        error.args = (error.message,)
                    raise error from None
                delay = failure.delay
                if delay is None:
                    cap = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
                    delay = self._random.uniform(0, cap)
                self.sleep(delay)
                continue
            response.attempts = attempt
            response.elapsed = time.monotonic() - started
            return response

    # -- one attempt -----------------------------------------------------------------------

    def _timeout(self, request: RequestLike) -> float:
        return float(request.timeout) if request.timeout else self.default_timeout

    def _attempt(
        self,
        request: RequestLike,
        http_method: str,
        method_name: str,
        auth: requests.auth.AuthBase | None,
        secrets: set[str],
        attempt: int,
        may_retry_unsafe: bool,
    ) -> HttpResponse:
        timeout = self._timeout(request)
        url_for_log = _redact_url(_url_with_query(request.url, request.query), secrets)
        host = _host_of(request.url)
        body_for_log: str | None = None
        started = time.monotonic()
        status: int | None = None
        excerpt: str | None = None
        error_text: str | None = None
        upload_responses: list[requests.Response] = []
        response: requests.Response | None = None
        try:
            data, content_type, body_for_log = self._body(request, secrets, upload_responses)
            headers = {k: v for k, v in (request.headers or {}).items() if v is not None}
            if request.multipart is not None:
                # Only our Content-Type carries the boundary the body uses.
                headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
            if content_type and not any(k.lower() == "content-type" for k in headers):
                headers["Content-Type"] = content_type
            prepared = self._session().prepare_request(
                requests.Request(
                    method=http_method,
                    url=request.url,
                    headers=headers,
                    params=list(request.query or []),
                    data=data,
                    auth=auth,
                )
            )
            url_for_log = _redact_url(prepared.url or request.url, secrets)
            deadline = started + 3 * timeout
            response = self._session().send(
                prepared, stream=True, timeout=(timeout, timeout), allow_redirects=False
            )
            status = response.status_code
            content = self._read_capped(response, host, method_name, deadline, timeout)
            excerpt = (
                _body_excerpt(content, secrets, keys=_response_keys(request)) if content else None
            )
            result = HttpResponse(
                status=status,
                headers=response.headers,
                content=content,
                elapsed=0.0,
                attempts=attempt,
                url=url_for_log,
            )
            self._check_status(
                result, request, http_method, method_name, url_for_log, host, may_retry_unsafe
            )
            return result
        except _AttemptFailure as failure:
            failure.error.url = url_for_log
            failure.error.method = method_name
            error_text = failure.error.message
            raise
        except IntegrationError as error:
            # Raised before or while sending (a file to upload, the size cap, or the
            # authenticator's refresh): it belongs to this spec method's delivery.
            error.url = url_for_log
            error.method = method_name
            error_text = error.message
            raise _AttemptFailure(error, retryable=False) from None
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            failure = self._transport_failure(
                exc, host, method_name, timeout, may_retry_unsafe, secrets
            )
            failure.error.url = url_for_log
            error_text = failure.error.message
            raise failure from None
        except ValueError:
            # http.client refuses a header with a line break ("Invalid header value b'Bearer
            # <the key>\r\n'"): its text holds the secret, so it is never passed on.
            error = IntegrationError(
                f"The request to {host} ({method_name}) was not sent: a header or the URL "
                "contains a line break or another character HTTP does not allow; check the "
                "integration's credentials and settings for a stray new line",
                method=method_name,
                url=url_for_log,
                permanent=True,
            )
            error_text = error.message
            raise _AttemptFailure(error, retryable=False) from None
        finally:
            if response is not None:
                response.close()
            for upload in upload_responses:
                upload.close()
            if self.on_attempt is not None:
                self.on_attempt(
                    AttemptRecord(
                        method_name=method_name,
                        http_method=http_method,
                        url_redacted=url_for_log,
                        status=status,
                        duration_ms=round((time.monotonic() - started) * 1000, 1),
                        attempt=attempt,
                        error=error_text,
                        request_body_redacted=body_for_log,
                        response_body_excerpt=excerpt,
                    )
                )

    def _read_capped(
        self,
        response: requests.Response,
        host: str,
        method_name: str,
        deadline: float,
        timeout: float,
    ) -> bytes:
        cap = self.max_response_bytes
        too_big = ResponseTooLarge(
            f"Response from {host} ({method_name}) is larger than {cap} bytes; stopped reading it",
            status=response.status_code,
            method=method_name,
            permanent=True,
        )
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            raise too_big
        chunks: list[bytes] = []
        total = 0
        for chunk in response.iter_content(_CHUNK_BYTES):
            total += len(chunk)
            if total > cap:
                raise too_big
            chunks.append(chunk)
            if time.monotonic() > deadline:
                raise _AttemptFailure(
                    IntegrationError(
                        f"{host} ({method_name}) was still sending its response after "
                        f"{3 * timeout:g} s; gave up",
                        status=response.status_code,
                        method=method_name,
                        permanent=False,
                    ),
                    retryable=False,
                )
        return b"".join(chunks)

    def _check_status(
        self,
        response: HttpResponse,
        request: RequestLike,
        http_method: str,
        method_name: str,
        url_for_log: str,
        host: str,
        may_retry_unsafe: bool,
    ) -> None:
        status = response.status
        success = request.success_codes
        if (status in success) if success else (200 <= status < 300):
            return
        if _is_accepted_error(response, getattr(request, "accept_errors", None)):
            response.accepted_error = True
            return
        secrets = request.redact or set()
        body = _body_excerpt(
            response.content, secrets, _ERROR_EXCERPT_CHARS, keys=_response_keys(request)
        )
        prefix = f"{status} from {host} ({method_name})"

        def fail(
            message: str,
            *,
            permanent: bool,
            retryable: bool = False,
            delay: float | None = None,
            retry_after: float | None = None,
            auth_failed: bool = False,
        ) -> _AttemptFailure:
            return _AttemptFailure(
                IntegrationError(
                    message,
                    status=status,
                    method=method_name,
                    url=url_for_log,
                    permanent=permanent,
                    retry_after=retry_after,
                    auth_failed=auth_failed,
                    response_body=body or None,
                ),
                retryable=retryable,
                delay=delay,
                status=status,
            )

        retry_after = _parse_retry_after(response.headers.get("Retry-After"))
        if status == 429:
            wait = retry_after if retry_after is not None else None
            shown = f"retry in {_seconds(wait)}" if wait is not None else "retry later"
            if wait is not None and wait > self.backoff_max:
                # Longer than we are willing to block a worker: let the task reschedule.
                raise fail(f"{prefix}: rate limited, {shown}", permanent=False, retry_after=wait)
            raise fail(
                f"{prefix}: rate limited, {shown}",
                permanent=False,
                retryable=True,
                delay=wait,
                retry_after=wait,
            )
        if status >= 500:
            delay = (
                retry_after if retry_after is not None and retry_after <= self.backoff_max else None
            )
            raise fail(
                f"{prefix}: the server had an error" + (f": {body}" if body else ""),
                permanent=False,
                retryable=may_retry_unsafe,
                delay=delay,
                retry_after=retry_after,
            )
        if 300 <= status < 400:
            location = redact(response.headers.get("Location", "") or "?", secrets)
            raise fail(
                f"{prefix}: redirected to {location} — redirects are not followed; "
                "update the URL in the integration",
                permanent=True,
            )
        if status == 401:
            raise fail(
                f"{prefix}: credentials rejected — reconnect the integration", permanent=True
            )
        if status == 403:
            raise fail(
                f"{prefix}: access denied — check the connected account's permissions"
                + (f": {body}" if body else ""),
                permanent=True,
            )
        if status == 404:
            raise fail(f"{prefix}: not found — check the URL and ids", permanent=True)
        if 400 <= status < 500:
            raise fail(
                f"{prefix}: request rejected" + (f": {body}" if body else ""), permanent=True
            )
        raise fail(f"{prefix}: unexpected status", permanent=True)

    def _transport_failure(
        self,
        exc: BaseException,
        host: str,
        method_name: str,
        timeout: float,
        may_retry_unsafe: bool,
        secrets: set[str],
    ) -> _AttemptFailure:
        def failure(message: str, *, permanent: bool, retryable: bool) -> _AttemptFailure:
            return _AttemptFailure(
                IntegrationError(redact(message, secrets), method=method_name, permanent=permanent),
                retryable=retryable,
            )

        if isinstance(exc, InvalidIPAddress):
            address = str(exc.args[0]) if exc.args else host
            name = _hostname_of(host)
            shown = address if name == address else f"{name} ({address})"
            return failure(
                f"Refused to connect to {shown}: private network addresses are not allowed "
                f"(set {_PRIVATE_NETWORKS_SETTING} to allow)",
                permanent=True,
                retryable=False,
            )
        reason = _root_reason(exc)
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            # Nothing was sent: retrying is safe for any method.
            return failure(
                f"Could not connect to {host}: timed out after {timeout:g} s",
                permanent=False,
                retryable=True,
            )
        if isinstance(exc, requests.exceptions.ReadTimeout) or isinstance(
            reason, urllib3.exceptions.ReadTimeoutError
        ):
            return failure(
                f"{host} ({method_name}) did not answer within {timeout:g} s",
                permanent=False,
                retryable=may_retry_unsafe,
            )
        if isinstance(exc, requests.exceptions.SSLError):
            return failure(
                f"Could not connect securely to {host}: {_short_reason(reason)}",
                permanent=True,
                retryable=False,
            )
        if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema):
            return failure(
                f"Invalid URL for {method_name}: {exc} — check the integration's URL settings",
                permanent=True,
                retryable=False,
            )
        if isinstance(reason, urllib3.exceptions.NameResolutionError) or (
            "Failed to resolve" in str(exc)
        ):
            return failure(
                f"Could not resolve {host}: check the host name", permanent=False, retryable=True
            )
        if isinstance(reason, urllib3.exceptions.NewConnectionError):
            # The connection was never established, so nothing was sent: safe to retry.
            text = str(reason).lower()
            why = "connection refused" if "refused" in text else _short_reason(reason)
            return failure(f"Could not connect to {host}: {why}", permanent=False, retryable=True)
        return failure(
            f"Connection to {host} failed ({method_name}): {_short_reason(reason)}",
            permanent=False,
            retryable=may_retry_unsafe,
        )

    # -- bodies ----------------------------------------------------------------------------

    def _body(
        self,
        request: RequestLike,
        secrets: set[str],
        upload_responses: list[requests.Response],
    ) -> tuple[Any, str | None, str | None]:
        """Return (data for requests, content type, redacted body text for the log)."""
        if request.multipart is not None:
            stream, content_type, summary = self._multipart(
                request.multipart, secrets, upload_responses
            )
            return stream, content_type, redact(summary, secrets)
        if request.form is not None:
            pairs = [(str(k), "" if v is None else str(v)) for k, v in request.form]
            logged = urllib.parse.urlencode(_redact_pairs(pairs))
            return (
                pairs,
                "application/x-www-form-urlencoded",
                _excerpt(redact(logged, secrets), _BODY_EXCERPT_CHARS),
            )
        if request.json_body is not None:
            encoded = json.dumps(request.json_body, ensure_ascii=False).encode("utf-8")
            logged = json.dumps(_redact_structure(request.json_body), ensure_ascii=False)
            return (
                encoded,
                request.content_type or "application/json",
                _excerpt(redact(logged, secrets), _BODY_EXCERPT_CHARS),
            )
        text_body = getattr(request, "text_body", None)
        if text_body is not None:
            return (
                str(text_body).encode("utf-8"),
                request.content_type or "text/plain; charset=utf-8",
                _excerpt(redact(str(text_body), secrets), _BODY_EXCERPT_CHARS),
            )
        body_file = getattr(request, "body_file", None)
        if body_file is not None:
            length, produce, _ = self._file_source(str(body_file), upload_responses)
            name = _filename_of(str(body_file))
            return (
                _MultipartStream([(length, produce)]),
                request.content_type or _guess_type(name),
                f"<file {name}, {length} bytes>",
            )
        return None, None, None

    def _multipart(
        self,
        parts: list[Any],
        secrets: set[str],
        upload_responses: list[requests.Response],
    ) -> tuple[_MultipartStream, str, str]:
        boundary = f"patchbay-{uuid.uuid4().hex}"
        segments: list[tuple[int | None, Callable[[], Iterator[bytes]]]] = []
        summary: list[str] = []

        def constant(data: bytes) -> None:
            segments.append((len(data), lambda: iter((data,))))

        for part in parts:
            name = str(_part_attr(part, "name"))
            file = _part_attr(part, "file")
            content_type = _part_attr(part, "content_type")
            disposition = f'form-data; name="{_quote_header_param(name)}"'
            if file:
                filename = _part_attr(part, "filename") or _filename_of(str(file))
                length, produce, guessed = self._file_source(str(file), upload_responses)
                content_type = content_type or guessed or _guess_type(filename)
                disposition += f'; filename="{_quote_header_param(filename)}"'
                head = (
                    f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
                    f"Content-Type: {content_type}\r\n\r\n"
                ).encode()
                constant(head)
                segments.append((length, produce))
                constant(b"\r\n")
                size = f"{length} bytes" if length is not None else "size unknown"
                summary.append(f"{name}=<file {filename}, {content_type}, {size}>")
            else:
                value = _part_attr(part, "value")
                if isinstance(value, bytes):
                    data = value
                elif isinstance(value, dict | list) or (
                    content_type and "json" in content_type and not isinstance(value, str)
                ):
                    data = json.dumps(value, ensure_ascii=False).encode("utf-8")
                    content_type = content_type or "application/json"
                elif isinstance(value, bool):
                    data = b"true" if value else b"false"
                else:
                    data = ("" if value is None else str(value)).encode("utf-8")
                head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
                if content_type:
                    head += f"Content-Type: {content_type}\r\n"
                constant(head.encode() + b"\r\n" + data + b"\r\n")
                shown = (
                    REDACTED if name.lower() in SENSITIVE_KEYS else data.decode(errors="replace")
                )
                summary.append(f"{name}={_excerpt(shown, 200)}")
        constant(f"--{boundary}--\r\n".encode())
        log = "multipart: " + "; ".join(summary)
        return (
            _MultipartStream(segments),
            f"multipart/form-data; boundary={boundary}",
            _excerpt(log, _BODY_EXCERPT_CHARS),
        )

    def _file_source(
        self, file: str, upload_responses: list[requests.Response]
    ) -> tuple[int | None, Callable[[], Iterator[bytes]], str | None]:
        """Return (length or None, chunk producer, content type or None) for a part's file.

        A URL is fetched through this session (SSRF guard, timeouts) as a stream; its bytes are
        passed on as they arrive.

        Raises:
            IntegrationError: the file is missing, the URL cannot be fetched, or it is larger
                than `max_upload_bytes`.
        """
        scheme = urllib.parse.urlsplit(file).scheme.lower()
        if scheme in ("http", "https"):
            return self._url_source(file, upload_responses)
        path = file[len("file://") :] if scheme == "file" else file
        try:
            length = os.path.getsize(path)
        except OSError as exc:
            raise IntegrationError(
                f"File to upload is not readable: {_filename_of(path)} ({exc.strerror})",
                permanent=True,
            ) from None
        if length > self.max_upload_bytes:
            raise IntegrationError(
                f"File to upload is larger than {self.max_upload_bytes} bytes", permanent=True
            )
        return length, _file_reader(path), None

    def _url_source(
        self, url: str, upload_responses: list[requests.Response]
    ) -> tuple[int | None, Callable[[], Iterator[bytes]], str | None]:
        host = _host_of(url)
        timeout = self.default_timeout
        try:
            response = self._session().get(
                url,
                stream=True,
                timeout=(timeout, timeout),
                allow_redirects=False,
                # We pass the bytes on as they are: ask for no content coding.
                headers={"Accept-Encoding": "identity"},
            )
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            failure = self._transport_failure(exc, host, "file download", timeout, True, set())
            raise failure.error from None
        upload_responses.append(response)
        if not 200 <= response.status_code < 300:
            raise IntegrationError(
                f"{response.status_code} from {host} (file download): could not fetch the file "
                "to upload",
                status=response.status_code,
                permanent=not response.status_code >= 500,
            )
        declared = response.headers.get("Content-Length", "")
        encoded = response.headers.get("Content-Encoding", "identity").lower() != "identity"
        length = int(declared) if declared.isdigit() and not encoded else None
        if length is not None and length > self.max_upload_bytes:
            raise IntegrationError(
                f"File at {host} is larger than {self.max_upload_bytes} bytes", permanent=True
            )
        cap = self.max_upload_bytes

        def produce() -> Iterator[bytes]:
            total = 0
            for chunk in response.iter_content(_CHUNK_BYTES):
                total += len(chunk)
                if total > cap:
                    raise IntegrationError(
                        f"File at {host} is larger than {cap} bytes", permanent=True
                    )
                yield chunk
            if length is not None and total != length:
                raise IntegrationError(
                    f"File at {host} ended after {total} of {length} bytes", permanent=False
                )

        content_type = response.headers.get("Content-Type")
        return length, produce, content_type.split(";")[0].strip() if content_type else None


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------


def _is_accepted_error(
    response: HttpResponse, accept_errors: Iterable[Mapping[str, Any]] | None
) -> bool:
    """Whether `response` matches one `{"status", "body_contains"?}` item of `accept_errors`."""
    for item in accept_errors or ():
        if item.get("status") != response.status:
            continue
        needle = item.get("body_contains")
        if needle is None or str(needle) in response.text:
            return True
    return False


def _part_attr(part: Any, name: str) -> Any:
    if isinstance(part, Mapping):
        return part.get(name)
    return getattr(part, name, None)


def _filename_of(file: str) -> str:
    path = urllib.parse.urlsplit(file).path if "://" in file else file
    return os.path.basename(path.rstrip("/")) or "file"


def _guess_type(filename: str) -> str:
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


def _host_of(url: str) -> str:
    """`host` or `host:port` of `url`, for messages (IPv6 addresses in brackets)."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or url
        if ":" in host and parts.hostname:
            host = f"[{host}]"
        return f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return url


def _hostname_of(host: str) -> str:
    """The name or address in a `host[:port]` from :func:`_host_of`, without brackets."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _url_with_query(url: str, query: Iterable[tuple[str, Any]] | None) -> str:
    pairs = list(query or [])
    if not pairs:
        return url
    return url + ("&" if "?" in url else "?") + urllib.parse.urlencode(pairs)


def _seconds(value: float | None) -> str:
    return f"{value:g} s" if value is not None else "?"


def _parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, round(when.timestamp() - (now if now is not None else time.time()), 3))


def _root_reason(exc: BaseException) -> BaseException:
    """The innermost cause of a requests/urllib3 error (MaxRetryError.reason and friends)."""
    seen: set[int] = set()
    current: BaseException = exc
    while id(current) not in seen:
        seen.add(id(current))
        inner: Any = None
        if isinstance(current, urllib3.exceptions.MaxRetryError) and current.reason:
            inner = current.reason
        elif current.args and isinstance(current.args[0], BaseException):
            inner = current.args[0]
        if inner is None:
            break
        current = inner
    return current


def _short_reason(exc: BaseException) -> str:
    text = str(exc)
    # urllib3 messages look like "HTTPConnection(host=…): Failed to establish…: [Errno 111] …"
    match = re.search(r"\[Errno -?\d+\] (.+?)['\")]*$", text)
    if match:
        return match.group(1).lower()
    return _excerpt(text, 200)
