"""The base of every inbound webhook view: read, authenticate, validate, store, answer.

A subclass describes one sender (the PBX here; SMS providers and CRMs later) by overriding a
few hooks, and inherits the order of work that STYLE rule 8 asks for:

1. **Resolve** the target from the URL (`resolve`): the organization (and installation) and the
   secret(s) it authenticates with. Unknown key → 401, nothing read.
2. **Authenticate** before anything is parsed (`authenticate`). Shared-secret credentials
   (Basic, `X-Patchbay-Secret`, Bearer) are checked before the body is read; a Standard
   Webhooks signature while the body streams in (one pass computes the HMAC). Missing or wrong
   credentials → 401, nothing stored.
3. **Read** the raw body with a size cap (`max_body_bytes`): into memory for JSON, streamed to a
   temporary file for file bodies (`body_is_file`). Over the cap → 413.
4. **Validate and normalize** (`parse`) into a `ParsedEvent`: malformed → 400 naming the field.
5. **Store** one inbox row (`integrations.inbox.inbox_event_store`), secrets redacted; the
   processing task is enqueued on commit.
6. **Answer**: 202 ``{"status": "accepted", "id": …}``; a duplicate 200
   ``{"status": "duplicate", "id": …}``; an event type we don't handle 200
   ``{"status": "ignored", "id": …}`` (stored as `ignored` and logged, so the sender does not
   retry forever). Our own bug is a 500 so the sender retries.

Errors are JSON in the API's one shape: ``{"message": "...", "errors": {"field": ["..."]}}``.

Authentication (`shared_secret_matches`, `standard_webhooks_verify`):

* **Basic**: any username, the password is the secret (what RingRx callbacks can send);
* **Header**: ``X-Patchbay-Secret: <secret>`` or ``Authorization: Bearer <secret>``;
* **Standard Webhooks**: ``webhook-id``, ``webhook-timestamp`` (Unix seconds, within
  WEBHOOK_SIGNATURE_TOLERANCE_SECONDS of now) and ``webhook-signature``: space-separated
  ``v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<raw body>")>``; any one matching is enough
  (a sender rotating its secret signs with both). The key is the secret's bytes as written,
  unless the secret is written ``whsec_<base64>``, in which case the key is the decoded base64
  (what the `standardwebhooks` libraries do).

Every comparison uses `hmac.compare_digest`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from django.conf import settings
from django.core.files.uploadedfile import TemporaryUploadedFile
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from integrations.engine.http import REDACTED, redact
from integrations.inbox import inbox_event_store
from integrations.models import InboxEvent, Installation
from tenants.models import Organization

logger = logging.getLogger(__name__)

SECRET_HEADER = "X-Patchbay-Secret"
STANDARD_WEBHOOKS_SECRET_PREFIX = "whsec_"
# Headers never stored (credentials); their values are replaced by "[redacted]".
REDACTED_HEADERS = frozenset(
    {"authorization", "x-patchbay-secret", "cookie", "proxy-authorization"}
)
_CHUNK_BYTES = 64 * 1024


class WebhookError(Exception):
    """Ends a webhook request with `status` and the API's error shape."""

    def __init__(
        self, status: int, message: str, errors: dict[str, list[str]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or {}


def malformed(field_name: str, message: str) -> WebhookError:
    """A 400 naming the field: ``{"message": "Invalid field: message", "errors": {...}}``."""
    return WebhookError(400, f"Invalid {field_name}: {message}", {field_name: [message]})


def unauthorized(message: str) -> WebhookError:
    return WebhookError(401, message)


@dataclass
class WebhookTarget:
    """Who a webhook is for and the secrets that authenticate it (several during rotation)."""

    organization: Organization | None
    secrets: list[str]
    installation: Installation | None = None


@dataclass
class RawBody:
    """The body as read: bytes (JSON bodies) or a temporary file (file bodies)."""

    size: int
    sha256: str
    data: bytes = b""
    file: TemporaryUploadedFile | None = None

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


@dataclass
class ParsedEvent:
    """What `parse` makes of a request: everything `inbox_event_store` needs but the target."""

    event_type: str
    dedup_key: str
    payload: dict[str, Any] = field(default_factory=dict)
    normalized: dict[str, Any] = field(default_factory=dict)
    correlation_key: str = ""
    file_name: str = ""
    ignored: bool = False
    note: str = ""


# --- Authentication --------------------------------------------------------------------------


def _basic_password(request: HttpRequest) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ""
    return decoded.partition(":")[2]


def _bearer_token(request: HttpRequest) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def shared_secret_matches(request: HttpRequest, secrets: Iterable[str]) -> bool | None:
    """Check the shared-secret credentials the request presents (Basic password,
    `X-Patchbay-Secret`, Bearer token) against `secrets`.

    Returns None when the request presents none, else whether every one presented matches a
    secret (constant-time comparisons).
    """
    presented = [
        value
        for value in (
            _basic_password(request),
            request.headers.get(SECRET_HEADER),
            _bearer_token(request),
        )
        if value is not None
    ]
    if not presented:
        return None
    candidates = [s.encode() for s in secrets if s]
    return all(
        any(hmac.compare_digest(value.encode(), secret) for secret in candidates)
        for value in presented
    )


def standard_webhooks_key(secret: str) -> bytes:
    """The HMAC key of `secret`: the decoded base64 after ``whsec_``, else the secret's bytes."""
    if secret.startswith(STANDARD_WEBHOOKS_SECRET_PREFIX):
        encoded = secret[len(STANDARD_WEBHOOKS_SECRET_PREFIX) :]
        try:
            return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except binascii.Error:
            pass
    return secret.encode()


def standard_webhooks_sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 signature>`` of `body` (what a sender puts in ``webhook-signature``)."""
    mac = hmac.new(standard_webhooks_key(secret), f"{msg_id}.{timestamp}.".encode(), "sha256")
    mac.update(body)
    return "v1," + base64.b64encode(mac.digest()).decode()


@dataclass
class SignatureCheck:
    """A Standard Webhooks verification fed the body as it streams in."""

    msg_id: str
    timestamp: str
    signatures: list[bytes]
    macs: list[hmac.HMAC]

    @classmethod
    def start(cls, request: HttpRequest, secrets: Iterable[str], tolerance: int) -> SignatureCheck:
        """Check the headers and the timestamp; raises 401 when they are missing or stale."""
        msg_id = request.headers.get("webhook-id", "")
        timestamp = request.headers.get("webhook-timestamp", "")
        header = request.headers.get("webhook-signature", "")
        if not (msg_id and timestamp and header):
            raise unauthorized(
                "Missing credentials: send the organization's webhook secret with Basic auth, "
                f"the {SECRET_HEADER} header, or a Standard Webhooks signature."
            )
        try:
            sent_at = int(timestamp)
        except ValueError:
            raise unauthorized("Invalid webhook-timestamp: expected Unix seconds.") from None
        if abs(time.time() - sent_at) > tolerance:
            raise unauthorized(
                f"Stale webhook-timestamp: more than {tolerance} s from now (check the clock)."
            )
        signatures = []
        for item in header.split():
            version, _, encoded = item.partition(",")
            if version != "v1":
                continue
            try:
                signatures.append(base64.b64decode(encoded, validate=True))
            except binascii.Error:
                continue
        prefix = f"{msg_id}.{timestamp}.".encode()
        macs = [hmac.new(standard_webhooks_key(s), prefix, "sha256") for s in secrets if s]
        return cls(msg_id, timestamp, signatures, macs)

    def update(self, chunk: bytes) -> None:
        for mac in self.macs:
            mac.update(chunk)

    def verify(self) -> None:
        """Raises 401 unless one of the signatures matches one of the secrets."""
        for mac in self.macs:
            expected = mac.digest()
            if any(hmac.compare_digest(expected, given) for given in self.signatures):
                return
        raise unauthorized("Invalid webhook-signature: no signature matches the webhook secret.")


# --- The view --------------------------------------------------------------------------------


@method_decorator(csrf_exempt, name="dispatch")
class WebhookView(View):
    """Base class of inbound webhook endpoints; see the module docstring for the order of work.

    Subclasses set `source` and override `resolve`, `parse` and, when needed, `body_is_file`,
    `is_supported` and `max_body_bytes`.
    """

    source: ClassVar[str]
    http_method_names: ClassVar[list[str]] = ["post"]

    # -- hooks --------------------------------------------------------------------------------

    def resolve(self, request: HttpRequest, **kwargs: Any) -> WebhookTarget:
        """The target of the URL; raise `unauthorized(...)` when the key is unknown."""
        raise NotImplementedError

    def event_name(self, **kwargs: Any) -> str:
        """The event type named by the URL."""
        return str(kwargs.get("event", ""))

    def is_supported(self, event: str) -> bool:
        """Whether `event` is a type this endpoint handles (others are stored as ignored)."""
        return True

    def body_is_file(self, event: str) -> bool:
        """Whether the body of `event` is a file (streamed to disk) rather than JSON."""
        return False

    def max_body_bytes(self, event: str) -> int:
        if self.body_is_file(event):
            return int(settings.WEBHOOK_MAX_FILE_BYTES)
        return int(settings.WEBHOOK_MAX_BODY_BYTES)

    def parse(
        self, request: HttpRequest, target: WebhookTarget, event: str, body: RawBody
    ) -> ParsedEvent:
        """Validate and normalize; raise `malformed(field, message)` for a bad request."""
        raise NotImplementedError

    # -- the request --------------------------------------------------------------------------

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        body: RawBody | None = None
        try:
            target = self.resolve(request, **kwargs)
            event = self.event_name(**kwargs)
            supported = self.is_supported(event)
            shared = shared_secret_matches(request, target.secrets)
            if shared is False:
                raise unauthorized("Wrong credentials: the webhook secret does not match.")
            signature = None
            if shared is None:
                signature = SignatureCheck.start(
                    request, target.secrets, settings.WEBHOOK_SIGNATURE_TOLERANCE_SECONDS
                )
            as_file = supported and self.body_is_file(event)
            body = self.read_body(
                request,
                limit=self.max_body_bytes(event if supported else ""),
                as_file=as_file,
                signature=signature,
            )
            if signature is not None:
                signature.verify()
            if supported:
                parsed = self.parse(request, target, event, body)
            else:
                parsed = ParsedEvent(
                    event_type=event,
                    dedup_key=f"{event}:{body.sha256}",
                    ignored=True,
                    note=f"Unsupported event type {event!r}: stored, not processed.",
                )
                logger.info(
                    "%s webhook: unsupported event %r for %s ignored",
                    self.source,
                    event,
                    target.organization,
                )
            return self.store(request, target, parsed, body)
        except WebhookError as error:
            response = JsonResponse(
                {"message": error.message, "errors": error.errors}, status=error.status
            )
            if error.status == 401:
                response["WWW-Authenticate"] = 'Basic realm="patchbay-webhooks"'
            return response
        finally:
            if body is not None and body.file is not None:
                body.file.close()

    def read_body(
        self,
        request: HttpRequest,
        *,
        limit: int,
        as_file: bool,
        signature: SignatureCheck | None = None,
    ) -> RawBody:
        """Read the raw body in chunks, at most `limit` bytes (413 beyond), hashing it and
        feeding the signature check on the way. A file body goes to a temporary file."""
        declared = request.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise self._too_large(limit)
        digest = hashlib.sha256()
        size = 0
        chunks: list[bytes] = []
        temp: TemporaryUploadedFile | None = None
        if as_file:
            temp = TemporaryUploadedFile(
                "body", request.content_type or "application/octet-stream", 0, None
            )
        try:
            while True:
                chunk = request.read(_CHUNK_BYTES)
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise self._too_large(limit)
                digest.update(chunk)
                if signature is not None:
                    signature.update(chunk)
                if temp is not None:
                    temp.write(chunk)
                else:
                    chunks.append(chunk)
        except BaseException:
            if temp is not None:
                temp.close()
            raise
        if temp is not None:
            temp.flush()
            temp.seek(0)
            temp.size = size
        return RawBody(size=size, sha256=digest.hexdigest(), data=b"".join(chunks), file=temp)

    @staticmethod
    def _too_large(limit: int) -> WebhookError:
        return WebhookError(413, f"Body too large: the limit is {limit} bytes.")

    def store(
        self, request: HttpRequest, target: WebhookTarget, parsed: ParsedEvent, body: RawBody
    ) -> HttpResponse:
        secrets = target.secrets
        text = "" if body.file is not None else redact(body.text(), secrets)
        event, created = inbox_event_store(
            source=self.source,
            organization=target.organization,
            installation=target.installation,
            event_type=parsed.event_type,
            dedup_key=parsed.dedup_key,
            correlation_key=parsed.correlation_key,
            body=text,
            payload=redacted_values(parsed.payload, secrets),
            normalized=redacted_values(parsed.normalized, secrets),
            content_type=request.content_type or "",
            query=redacted_query(request, secrets),
            headers=redacted_headers(request, secrets),
            file=body.file,
            file_name=parsed.file_name,
            state=InboxEvent.State.IGNORED if parsed.ignored else InboxEvent.State.RECEIVED,
            last_error=parsed.note,
        )
        if not created:
            return JsonResponse({"status": "duplicate", "id": event.pk}, status=200)
        if parsed.ignored:
            return JsonResponse({"status": "ignored", "id": event.pk}, status=200)
        return JsonResponse({"status": "accepted", "id": event.pk}, status=202)


def redacted_headers(request: HttpRequest, secrets: Iterable[str]) -> dict[str, str]:
    """The request's headers, credentials replaced by "[redacted]" and secrets removed."""
    secrets = list(secrets)
    return {
        name: REDACTED if name.lower() in REDACTED_HEADERS else redact(value, secrets)
        for name, value in request.headers.items()
    }


def redacted_values(value: Any, secrets: Iterable[str]) -> Any:
    """`value` (parsed JSON) with every secret removed from its strings."""
    secrets = [s for s in secrets if s]
    if isinstance(value, dict):
        return {key: redacted_values(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [redacted_values(item, secrets) for item in value]
    if isinstance(value, str) and secrets:
        return redact(value, secrets)
    return value


def redacted_query(request: HttpRequest, secrets: Iterable[str]) -> dict[str, Any]:
    """The query string as a dict (a repeated key gives a list), secrets redacted."""
    secrets = list(secrets)
    out: dict[str, Any] = {}
    for key in request.GET:
        values = [redact(v, secrets) for v in request.GET.getlist(key)]
        out[key] = values[0] if len(values) == 1 else values
    return out


def json_object(body: RawBody) -> dict[str, Any]:
    """The body parsed as a JSON object; 400 naming `body` otherwise."""
    if not body.data.strip():
        raise malformed("body", "is empty; expected a JSON object")
    try:
        value = json.loads(body.data)
    except UnicodeDecodeError:
        raise malformed("body", "is not UTF-8 text") from None
    except ValueError as exc:
        raise malformed("body", f"is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise malformed("body", "must be a JSON object")
    return value
