"""An imitation of the RingRx PBX API: JWT token exchange, SMS sending, and callbacks.

Source: shared/seeds/ringrx-api-and-callbacks.txt.

* ``POST /auth/token`` with ``token`` + ``secret`` (an API key, preferred) or ``username`` +
  ``password``, read from the query string, a form or a JSON body. Answers the seed's token
  data object: ``token_type``, ``access_token`` (an HS256 JWT carrying ``exp``),
  ``expires_in``, ``refresh_token`` (a longer-lived JWT).
* ``POST /auth/refresh?refresh_token=…`` issues a new token data object. By default the old
  refresh token is then spent (rotation), so two clients refreshing concurrently with the
  same token see one success and one 401 — the case the engine's refresh lock must avoid.
* Every other route needs ``Authorization: Bearer <access token>``; a missing, invalid or
  expired token gets ``401 {"message": "Not Authenticated"}`` (the seed names the status
  and the phrase, not the body).
* ``GET /myphones`` lists the account's numbers; ``DELETE /myphones/api_key/<token>`` deletes
  an API key and, as the seed says, invalidates the access tokens minted from it.
* SMS sending: the seed only says "consult the Swagger documentation", so the endpoint is
  our plausible guess: ``POST /sms`` with JSON ``{"from", "to", "message", "media_urls"?}``
  answering ``{"id", "status": "queued", ...}``; ``GET /sms/<id>`` reads one back.

:meth:`RingRxSandbox.send_callback` plays RingRx calling *us*: it posts a callback of any
type with the seed's token replacement in URL and headers, optional Basic auth (never token
replaced) and an optional Standard Webhooks signature (DESIGN section 7).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import urllib.parse
import uuid
from copy import deepcopy
from datetime import UTC, datetime
from typing import Any, ClassVar

import requests

from integrations.ringrx_formats import CALLBACK_TYPES, DOMAIN, ringrx_callback_sample
from integrations.sandbox.base import (
    SandboxRequest,
    SandboxResponse,
    SandboxServer,
    json_response,
    require_loopback_url,
    route,
)

DEFAULT_API_TOKEN = "rrx-sandbox-api-token"
DEFAULT_API_SECRET = "rrx-sandbox-api-secret"
DEFAULT_USERNAME = "admin@customer.ringrx.com"
DEFAULT_PASSWORD = "sandbox-password"

SEED_PHONES: list[dict[str, Any]] = [
    {"id": 101, "number": "+18185559876", "name": "Main line", "sms_enabled": True},
    {"id": 102, "number": "+18185559877", "name": "Support", "sms_enabled": True},
    {"id": 103, "number": "+18885439876", "name": "Toll free", "sms_enabled": False},
]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwt_encode(claims: dict[str, Any], key: bytes) -> str:
    """An HS256 JSON Web Token (stdlib only)."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    signature = _b64url(hmac.new(key, signing_input, hashlib.sha256).digest())
    return f"{header}.{payload}.{signature}"


def jwt_decode(token: str, key: bytes) -> dict[str, Any] | None:
    """The claims of an HS256 token signed with ``key``, or None (expiry is not checked)."""
    try:
        header, payload, signature = token.split(".")
        expected = _b64url(hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(signature, expected):
            return None
        claims = json.loads(_b64url_decode(payload))
    except (ValueError, UnicodeDecodeError):
        return None
    return claims if isinstance(claims, dict) else None


def jwt_claims_unverified(token: str) -> dict[str, Any]:
    """The claims of a JWT without checking its signature (what a client may read)."""
    return json.loads(_b64url_decode(token.split(".")[1]))


def standard_webhooks_headers(
    secret: str, body: bytes, msg_id: str | None = None, timestamp: int | None = None
) -> dict[str, str]:
    """``webhook-id``/``webhook-timestamp``/``webhook-signature`` per the Standard Webhooks spec.

    ``secret`` is ``whsec_<base64 key>`` (or the raw base64 key); the signature is
    ``v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>``.
    """
    msg_id = msg_id or f"msg_{secrets.token_hex(12)}"
    timestamp = int(time.time()) if timestamp is None else timestamp
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    signature = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": f"v1,{signature}",
    }


def replace_tokens(template: str, values: dict[str, Any], *, url: bool = False) -> str:
    """RingRx token replacement: every ``{name}`` becomes the value of ``name``.

    In a URL the value is percent-encoded. Unknown tokens are left as written. Values are
    inserted once (a value containing ``{x}`` is not expanded again).
    """
    out = []
    index = 0
    while index < len(template):
        start = template.find("{", index)
        end = template.find("}", start + 1) if start >= 0 else -1
        if start < 0 or end < 0:
            out.append(template[index:])
            break
        out.append(template[index:start])
        name = template[start + 1 : end].strip()
        if name in values:
            value = "" if values[name] is None else str(values[name])
            out.append(urllib.parse.quote(value, safe="") if url else value)
        else:
            out.append(template[start : end + 1])
        index = end + 1
    return "".join(out)


def callback_payload(
    callback_type: str, *, now: datetime | None = None, **overrides: Any
) -> dict[str, Any]:
    """A sample callback body of ``callback_type`` in the seed's format, with overrides.

    Its timestamps are ``now`` (default: the current time).

    For ``voicemail`` and ``fax`` (whose body is the file) this returns the token values;
    post the file with ``send_callback(..., body=<bytes>, tokens=<these>)``.

    Raises:
        ValueError: unknown callback type.
    """
    return {**ringrx_callback_sample(callback_type, now=now), **overrides}


class RingRxSandbox(SandboxServer):
    """RingRx: JWT auth with refresh, phone numbers, SMS send, and callbacks to a URL.

    Tunables (``configure(...)``, restored by ``reset()``):
        token_lifetime: seconds an access token lives (``expires_in``; RingRx: 3600).
        refresh_lifetime: seconds a refresh token lives.
        rotate_refresh_tokens: a refresh token works once (True) or until it expires.
    """

    name: ClassVar[str] = "ringrx"
    description: ClassVar[str] = "RingRx PBX API: JWT auth/token + auth/refresh, SMS, callbacks"
    tunables: ClassVar[tuple[str, ...]] = (
        "token_lifetime",
        "refresh_lifetime",
        "rotate_refresh_tokens",
    )

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        verbose: bool = False,
        api_token: str = DEFAULT_API_TOKEN,
        api_secret: str = DEFAULT_API_SECRET,
        username: str = DEFAULT_USERNAME,
        password: str = DEFAULT_PASSWORD,
        token_lifetime: int = 3600,
        refresh_lifetime: int = 86400,
    ) -> None:
        """Credentials are fixed per server; see the class docstring for the tunables."""
        self.username = username
        self.password = password
        self.initial_api_keys = {api_token: api_secret}
        self.token_lifetime = token_lifetime
        self.refresh_lifetime = refresh_lifetime
        self.rotate_refresh_tokens = True
        self._signing_key = secrets.token_bytes(32)
        super().__init__(host=host, port=port, verbose=verbose)

    # -- state ---------------------------------------------------------------------------

    def reset_state(self) -> None:
        """Restore API keys and numbers; forget issued tokens and sent SMS."""
        self.api_keys: dict[str, str] = dict(self.initial_api_keys)
        self.phones: list[dict[str, Any]] = deepcopy(SEED_PHONES)
        #: jti → {"kind", "api_key", "exp", "spent"} for every token issued.
        self.issued: dict[str, dict[str, Any]] = {}
        #: SMS sent through ``POST /sms``, in order.
        self.sent_sms: list[dict[str, Any]] = []
        #: Callbacks posted by :meth:`send_callback`: {"url", "type", "status", "headers"}.
        self.callbacks_sent: list[dict[str, Any]] = []

    def state(self) -> dict[str, Any]:
        """Numbers, API key tokens (not secrets), sent SMS and callbacks sent."""
        return {
            "phones": self.phones,
            "api_keys": sorted(self.api_keys),
            "sent_sms": self.sent_sms,
            "callbacks_sent": self.callbacks_sent,
        }

    def failure_body(self, status: int) -> Any:
        """Injected failures answer ``{"message": ...}`` like the rest of this API."""
        return {"message": f"injected failure ({status})"}

    def not_found(self, request: SandboxRequest) -> SandboxResponse:
        """Unknown routes."""
        return json_response({"message": "Not Found"}, 404)

    # -- tokens --------------------------------------------------------------------------

    def _issue(self, subject: str, api_key: str | None) -> dict[str, Any]:
        now = int(self.now())
        access_jti, refresh_jti = secrets.token_hex(8), secrets.token_hex(8)
        access_exp = now + int(self.token_lifetime)
        refresh_exp = now + int(self.refresh_lifetime)
        base = {"sub": subject, "iss": "ringrx-sandbox", "domain": DOMAIN, "iat": now}
        access = jwt_encode(
            {**base, "typ": "access", "jti": access_jti, "exp": access_exp}, self._signing_key
        )
        refresh = jwt_encode(
            {**base, "typ": "refresh", "jti": refresh_jti, "exp": refresh_exp}, self._signing_key
        )
        with self.lock:
            self.issued[access_jti] = {
                "kind": "access",
                "api_key": api_key,
                "exp": access_exp,
                "spent": False,
                "sub": subject,
            }
            self.issued[refresh_jti] = {
                "kind": "refresh",
                "api_key": api_key,
                "exp": refresh_exp,
                "spent": False,
                "sub": subject,
            }
        return {
            "token_type": "Bearer",
            "access_token": access,
            "expires_in": int(self.token_lifetime),
            "refresh_token": refresh,
        }

    def issue_tokens(self) -> dict[str, Any]:
        """A token data object for the default API key, without an HTTP round trip."""
        api_token = next(iter(self.initial_api_keys))
        return self._issue(f"apikey:{api_token}", api_token)

    def _check(self, token: str | None, kind: str) -> dict[str, Any] | None:
        """The issued-token record for a live token of ``kind``, else None."""
        if not token:
            return None
        claims = jwt_decode(token, self._signing_key)
        if claims is None or claims.get("typ") != kind:
            return None
        with self.lock:
            record = self.issued.get(str(claims.get("jti")))
            if record is None or record["spent"]:
                return None
            if record["exp"] <= self.now():
                return None
            if record["api_key"] is not None and record["api_key"] not in self.api_keys:
                return None
            return record

    def _not_authenticated(self) -> SandboxResponse:
        return json_response(
            {"message": "Not Authenticated"}, 401, {"WWW-Authenticate": 'Bearer realm="ringrx"'}
        )

    def _authenticate(self, request: SandboxRequest) -> dict[str, Any] | None:
        header = request.header("Authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        return self._check(token.strip(), "access")

    @staticmethod
    def _params(request: SandboxRequest) -> dict[str, Any]:
        params: dict[str, Any] = request.args()
        if isinstance(request.json, dict):
            params.update(request.json)
        return params

    @route("POST", "/auth/token")
    def auth_token(self, request: SandboxRequest) -> SandboxResponse:
        """Exchange an API key (token + secret) or username + password for tokens."""
        params = self._params(request)
        if params.get("token") is not None or params.get("secret") is not None:
            token, secret = str(params.get("token") or ""), str(params.get("secret") or "")
            expected = self.api_keys.get(token)
            if expected is None or not hmac.compare_digest(expected, secret):
                return self._not_authenticated()
            return json_response(self._issue(f"apikey:{token}", token))
        if params.get("username") is not None:
            if params.get("username") != self.username or not hmac.compare_digest(
                str(params.get("password") or ""), self.password
            ):
                return self._not_authenticated()
            return json_response(self._issue(self.username, None))
        return json_response(
            {"message": "token and secret (or username and password) are required"}, 400
        )

    @route("POST", "/auth/refresh")
    def auth_refresh(self, request: SandboxRequest) -> SandboxResponse:
        """A new token data object for a live refresh token (spent when rotation is on)."""
        token = self._params(request).get("refresh_token")
        record = self._check(str(token) if token else None, "refresh")
        if record is None:
            return self._not_authenticated()
        with self.lock:
            if self.rotate_refresh_tokens:
                record["spent"] = True
        return json_response(self._issue(record["sub"], record["api_key"]))

    # -- API -----------------------------------------------------------------------------

    @route("GET", "/myphones")
    def phones_list(self, request: SandboxRequest) -> SandboxResponse:
        """The account's phone numbers."""
        if self._authenticate(request) is None:
            return self._not_authenticated()
        return json_response({"data": self.phones})

    @route("DELETE", "/myphones/api_key/<token>")
    def api_key_delete(self, request: SandboxRequest, token: str) -> SandboxResponse:
        """Delete an API key: tokens minted from it stop working at once."""
        if self._authenticate(request) is None:
            return self._not_authenticated()
        with self.lock:
            if self.api_keys.pop(token, None) is None:
                return json_response({"message": "Not Found"}, 404)
        return json_response({"message": "deleted"})

    @route("POST", "/sms")
    def sms_send(self, request: SandboxRequest) -> SandboxResponse:
        """Send an SMS (plausible shape; the seed defers to RingRx's Swagger)."""
        if self._authenticate(request) is None:
            return self._not_authenticated()
        params = self._params(request)
        for name in ("from", "to"):
            if not params.get(name):
                return json_response({"message": f"{name} is required", "field": name}, 400)
        if not params.get("message") and not params.get("media_urls"):
            return json_response(
                {"message": "message (or media_urls) is required", "field": "message"}, 400
            )
        numbers = {p["number"] for p in self.phones if p["sms_enabled"]}
        if params["from"] not in numbers:
            return json_response(
                {
                    "message": f"{params['from']} is not an SMS-enabled number of this account",
                    "field": "from",
                },
                422,
            )
        message = {
            "id": str(uuid.uuid4()),
            "from": params["from"],
            "to": params["to"],
            "message": params.get("message") or "",
            "media_urls": params.get("media_urls") or [],
            "status": "queued",
            "created_at": datetime.fromtimestamp(self.now(), UTC).isoformat(),
        }
        with self.lock:
            self.sent_sms.append(message)
        return json_response(message)

    @route("GET", "/sms/<message_id>")
    def sms_get(self, request: SandboxRequest, message_id: str) -> SandboxResponse:
        """One sent SMS."""
        if self._authenticate(request) is None:
            return self._not_authenticated()
        with self.lock:
            for message in self.sent_sms:
                if message["id"] == message_id:
                    return json_response(message)
        return json_response({"message": "Not Found"}, 404)

    # -- callbacks -----------------------------------------------------------------------

    def send_callback(
        self,
        url: str,
        callback_type: str,
        payload: dict[str, Any] | None = None,
        *,
        body: bytes | None = None,
        content_type: str | None = None,
        tokens: dict[str, Any] | None = None,
        headers: dict[str, str] | str | None = None,
        username: str | None = None,
        password: str | None = None,
        signing_secret: str | None = None,
        timeout: float = 10.0,
    ) -> requests.Response:
        """POST a RingRx callback of ``callback_type`` to ``url`` (loopback only).

        Args:
            url: destination; ``{token}`` placeholders are replaced (percent-encoded).
            callback_type: one of :data:`CALLBACK_TYPES`.
            payload: the JSON body (default: :func:`callback_payload` of the type). For
                ``voicemail``/``fax`` the values are only used as tokens.
            body: a raw body instead of JSON (the voicemail or fax file).
            content_type: the body's MIME type (default ``audio/wav`` for voicemail,
                ``application/pdf`` for fax, JSON otherwise).
            tokens: token values (default: the payload).
            headers: custom headers, as a dict or as RingRx's text (one ``Name:value`` per
                line); token replaced.
            username, password: Basic auth, sent as given (never token replaced).
            signing_secret: add Standard Webhooks headers signed with this ``whsec_`` secret.

        Raises:
            ValueError: unknown type, or a non-loopback URL.
        """
        if callback_type not in CALLBACK_TYPES:
            raise ValueError(f"unknown RingRx callback type {callback_type!r}")
        if payload is None:
            payload = callback_payload(callback_type)
        values = dict(tokens if tokens is not None else payload)
        target = replace_tokens(url, values, url=True)
        require_loopback_url(target)
        if isinstance(headers, str):
            parsed: dict[str, str] = {}
            for line in headers.replace("\r\n", "\n").split("\n"):
                if ":" in line:
                    name, _, value = line.partition(":")
                    parsed[name.strip()] = value.strip()
            headers = parsed
        sent_headers = {"User-Agent": "RingRx-Callback-Sandbox"}
        for name, value in (headers or {}).items():
            sent_headers[name] = replace_tokens(value, values)
        if body is None and callback_type in ("voicemail", "fax"):
            body = (
                b"RIFF\x00\x00\x00\x00WAVEfmt " if callback_type == "voicemail" else b"%PDF-1.4\n"
            )
        if body is not None:
            data = body
            sent_headers["Content-Type"] = content_type or (
                "audio/wav"
                if callback_type == "voicemail"
                else "application/pdf"
                if callback_type == "fax"
                else "application/octet-stream"
            )
        else:
            data = json.dumps(payload).encode("utf-8")
            sent_headers["Content-Type"] = content_type or "application/json"
        if signing_secret:
            sent_headers.update(standard_webhooks_headers(signing_secret, data))
        auth = (username, password or "") if username is not None else None
        response = requests.post(
            target, data=data, headers=sent_headers, auth=auth, timeout=timeout
        )
        with self.lock:
            self.callbacks_sent.append(
                {
                    "url": target,
                    "type": callback_type,
                    "status": response.status_code,
                    "headers": sent_headers,
                }
            )
        return response
