"""An imitation of an SMS/MMS provider shaped like the seed's SMS template.

Source: shared/seeds/ringotel-sms-json-framework.txt.

Outbound (Patchbay → provider), the template's ``SendMessage``/``SendFile``:
``POST /webhook`` (the template's path; ``POST /messages`` is the same) with JSON
``{"from", "to", "extension", "domain", "content"}`` or ``{..., "media_url"}`` answering
``{"data": {"id": "<message id>"}}``. Every message is kept (``sent_messages``);
``GET /messages`` and ``GET /messages/<id>`` read them back. With the ``api_key`` tunable
set, requests must carry ``Authorization: Bearer <api_key>`` (the template itself has no
auth). With ``return_message_id=False`` the answer has no id (``{"data": {}}``), for the
``message_ref`` path of DESIGN 4.6. ``GET /media/<name>`` serves sample media files
(``sample.jpg``, ``sample.pdf``) for MMS URLs.

Inbound (provider → Patchbay), helpers that post to a URL on loopback:

* :meth:`SmsProviderSandbox.post_inbound_message` / :meth:`~SmsProviderSandbox.post_inbound_file`
  — the template's two Webhook models (``{"method": "message", "params": {...}}`` and
  ``{"method": "file", "params": {..., "text", "url"}}``);
* :meth:`~SmsProviderSandbox.post_status` — a delivery status event (shape is ours: the
  template has no status model);
* :meth:`~SmsProviderSandbox.post_signed_form` — Twilio style: a form with numbered
  ``MediaUrl0..N`` fields and ``X-Twilio-Signature`` = base64(HMAC-SHA1(auth token,
  URL + each sorted key followed by its value(s)));
* :meth:`~SmsProviderSandbox.post_ed25519_json` — a JSON body signed with Ed25519 over the
  timestamp followed by the body (separator configurable), Discord/Telnyx style.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from integrations.sandbox.base import (
    SandboxRequest,
    SandboxResponse,
    SandboxServer,
    json_response,
    new_id,
    require_loopback_url,
    route,
)

PHONE_RE = re.compile(r"^\+?[0-9]{5,15}$")

#: Small files served under ``/media/<name>`` (MMS URLs the portal can fetch).
SAMPLE_MEDIA: dict[str, tuple[str, bytes]] = {
    "sample.jpg": ("image/jpeg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 64 + b"\xff\xd9"),
    "sample.pdf": ("application/pdf", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"),
}

FormParams = Mapping[str, str | Sequence[str]] | Iterable[tuple[str, str]]


def _pairs(params: FormParams) -> list[tuple[str, str]]:
    if isinstance(params, Mapping):
        pairs: list[tuple[str, str]] = []
        for key, value in params.items():
            if isinstance(value, str):
                pairs.append((key, value))
            else:
                pairs.extend((key, str(item)) for item in value)
        return pairs
    return [(str(k), str(v)) for k, v in params]


def twilio_signature(url: str, params: FormParams, auth_token: str) -> str:
    """Twilio's request signature: base64(HMAC-SHA1(token, url + key1 + value1 + ...)).

    Keys are sorted; a repeated key contributes each of its distinct values, sorted, as
    Twilio's own helper library does.
    """
    values: dict[str, set[str]] = {}
    for key, value in _pairs(params):
        values.setdefault(key, set()).add(value)
    payload = url + "".join(key + value for key in sorted(values) for value in sorted(values[key]))
    digest = hmac.new(auth_token.encode("utf-8"), payload.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def twilio_inbound_params(
    from_: str,
    to: str,
    body: str = "",
    media_urls: Sequence[str] = (),
    media_types: Sequence[str] | None = None,
    account_sid: str = "AC" + "0" * 32,
) -> dict[str, str]:
    """The fields of a Twilio inbound SMS/MMS webhook, ``MediaUrl0..N`` numbered."""
    params = {
        "MessageSid": "SM" + new_id()[:16] + "0" * 16,
        "AccountSid": account_sid,
        "From": from_,
        "To": to,
        "Body": body,
        "NumMedia": str(len(media_urls)),
        "NumSegments": "1",
        "SmsStatus": "received",
        "ApiVersion": "2010-04-01",
    }
    for index, url in enumerate(media_urls):
        params[f"MediaUrl{index}"] = url
        params[f"MediaContentType{index}"] = (
            media_types[index] if media_types and index < len(media_types) else "image/jpeg"
        )
    return params


def ed25519_keypair() -> tuple[Ed25519PrivateKey, str]:
    """A new Ed25519 key and its public key as hex (what a spec's ``secret`` would hold)."""
    private_key = Ed25519PrivateKey.generate()
    public = private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return private_key, public.hex()


def ed25519_sign(
    private_key: Ed25519PrivateKey,
    timestamp: str,
    body: bytes,
    separator: str = "",
    encoding: str = "hex",
) -> str:
    """Sign ``timestamp + separator + body``; ``encoding`` is ``hex`` or ``base64``."""
    signature = private_key.sign(timestamp.encode("ascii") + separator.encode("utf-8") + body)
    return signature.hex() if encoding == "hex" else base64.b64encode(signature).decode("ascii")


class SmsProviderSandbox(SandboxServer):
    """The template's SMS provider: send endpoint, message log, media, inbound helpers.

    Tunables (``configure(...)``, restored by ``reset()``):
        api_key: when set, ``Authorization: Bearer <api_key>`` is required.
        return_message_id: answer ``{"data": {"id": ...}}`` (True) or ``{"data": {}}``.
    """

    name: ClassVar[str] = "sms"
    description: ClassVar[str] = "SMS/MMS provider (seed SMS template): send, webhooks, media"
    tunables: ClassVar[tuple[str, ...]] = ("api_key", "return_message_id")

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        verbose: bool = False,
        api_key: str | None = None,
    ) -> None:
        """See the class docstring for the tunables."""
        self.api_key = api_key
        self.return_message_id = True
        super().__init__(host=host, port=port, verbose=verbose)

    def reset_state(self) -> None:
        """Forget sent messages and the inbound posts made."""
        #: Messages received on the send endpoint, in order.
        self.sent_messages: list[dict[str, Any]] = []
        #: Inbound webhooks posted by the helpers: {"url", "kind", "status", "body"}.
        self.inbound_posts: list[dict[str, Any]] = []

    def state(self) -> dict[str, Any]:
        """Sent messages and inbound posts."""
        return {"sent_messages": self.sent_messages, "inbound_posts": self.inbound_posts}

    def messages_to(self, number: str) -> list[dict[str, Any]]:
        """Messages sent to ``number``."""
        with self.lock:
            return [m for m in self.sent_messages if m["to"] == number]

    # -- outbound: Patchbay sends -----------------------------------------------------------

    def _error(
        self, status: int, code: str, message: str, field: str | None = None
    ) -> SandboxResponse:
        error: dict[str, Any] = {"code": code, "message": message}
        if field:
            error["field"] = field
        return json_response({"error": error}, status)

    @route("POST", "/webhook")
    @route("POST", "/messages")
    def send(self, request: SandboxRequest) -> SandboxResponse:
        """Accept one SendMessage (``content``) or SendFile (``media_url``) request."""
        if self.api_key is not None:
            header = request.header("Authorization") or ""
            if not hmac.compare_digest(header, f"Bearer {self.api_key}"):
                return self._error(401, "unauthorized", "invalid or missing API key")
        body = request.json
        if not isinstance(body, dict):
            return self._error(400, "invalid_body", "the body must be a JSON object", "body")
        for name in ("from", "to"):
            value = body.get(name)
            if not value:
                return self._error(400, "validation_error", f"{name} is required", name)
            if not isinstance(value, str) or not PHONE_RE.match(value):
                return self._error(
                    400, "validation_error", f"{name} must be a phone number (E.164)", name
                )
        has_text = isinstance(body.get("content"), str) and body["content"] != ""
        has_media = isinstance(body.get("media_url"), str) and body["media_url"] != ""
        if not has_text and not has_media:
            return self._error(
                400, "validation_error", "content or media_url is required", "content"
            )
        if has_media and not re.match(r"^https?://", body["media_url"]):
            return self._error(400, "validation_error", "media_url must be a URL", "media_url")
        message = {
            "id": new_id("msg_"),
            "kind": "file" if has_media else "message",
            "from": body["from"],
            "to": body["to"],
            "extension": body.get("extension"),
            "domain": body.get("domain"),
            "content": body.get("content"),
            "media_url": body.get("media_url"),
            "extra": {
                k: v
                for k, v in body.items()
                if k not in ("from", "to", "extension", "domain", "content", "media_url")
            },
            "status": "queued",
            "created_at": datetime.fromtimestamp(self.now(), UTC).isoformat(),
        }
        with self.lock:
            self.sent_messages.append(message)
        data = {"id": message["id"]} if self.return_message_id else {}
        return json_response({"data": data})

    @route("GET", "/messages")
    def messages_list(self, request: SandboxRequest) -> SandboxResponse:
        """Sent messages (``?to=`` filters)."""
        with self.lock:
            found = list(self.sent_messages)
        if (to := request.arg("to")) is not None:
            found = [m for m in found if m["to"] == to]
        return json_response({"data": found})

    @route("GET", "/messages/<message_id>")
    def messages_get(self, request: SandboxRequest, message_id: str) -> SandboxResponse:
        """One sent message."""
        with self.lock:
            for message in self.sent_messages:
                if message["id"] == message_id:
                    return json_response({"data": message})
        return self._error(404, "not_found", f"message {message_id} not found")

    @route("GET", "/media/<name>")
    def media(self, request: SandboxRequest, name: str) -> SandboxResponse:
        """A sample media file."""
        if name not in SAMPLE_MEDIA:
            return self._error(404, "not_found", f"no media {name}")
        content_type, content = SAMPLE_MEDIA[name]
        return SandboxResponse(200, content, {"Content-Type": content_type})

    def media_url(self, name: str = "sample.jpg") -> str:
        """The absolute URL of a sample media file."""
        return f"{self.url}/media/{name}"

    # -- inbound: the provider posts to Patchbay ------------------------------------------

    def _post(
        self, kind: str, url: str, *, data: bytes, headers: dict[str, str], timeout: float
    ) -> requests.Response:
        require_loopback_url(url)
        response = requests.post(url, data=data, headers=headers, timeout=timeout)
        with self.lock:
            self.inbound_posts.append(
                {
                    "url": url,
                    "kind": kind,
                    "status": response.status_code,
                    "body": data.decode("utf-8", "replace"),
                }
            )
        return response

    def post_json(
        self,
        url: str,
        payload: Any,
        *,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> requests.Response:
        """POST any JSON body (for malformed-payload tests)."""
        body = json.dumps(payload).encode("utf-8")
        return self._post(
            "json",
            url,
            data=body,
            timeout=timeout,
            headers={"Content-Type": "application/json", **(headers or {})},
        )

    def post_inbound_message(
        self,
        url: str,
        from_: str,
        to: str,
        content: str,
        *,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> requests.Response:
        """The template's ``message`` model: ``{"method": "message", "params": {...}}``."""
        payload = {"method": "message", "params": {"from": from_, "to": to, "content": content}}
        return self.post_json(url, payload, headers=headers, timeout=timeout)

    def post_inbound_file(
        self,
        url: str,
        from_: str,
        to: str,
        file_url: str,
        text: str = "",
        *,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> requests.Response:
        """The template's ``file`` model: ``{"method": "file", "params": {..., "url"}}``."""
        payload = {
            "method": "file",
            "params": {"from": from_, "to": to, "text": text, "url": file_url},
        }
        return self.post_json(url, payload, headers=headers, timeout=timeout)

    def post_status(
        self,
        url: str,
        message_id: str,
        status: str,
        *,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
        **extra: Any,
    ) -> requests.Response:
        """A delivery status event ``{"method": "status", "params": {"id", "status", ...}}``.

        The template has no status model; this shape is ours, for ``status`` specs.
        """
        payload = {"method": "status", "params": {"id": message_id, "status": status, **extra}}
        return self.post_json(url, payload, headers=headers, timeout=timeout)

    def post_signed_form(
        self,
        url: str,
        params: FormParams,
        auth_token: str,
        *,
        header: str = "X-Twilio-Signature",
        sign_url: str | None = None,
        timeout: float = 10.0,
    ) -> requests.Response:
        """POST a form signed Twilio style (see :func:`twilio_signature`).

        ``sign_url`` is the URL the receiver believes it was called at, if it differs from
        ``url`` (behind a proxy); it defaults to ``url``.
        """
        pairs = _pairs(params)
        signature = twilio_signature(sign_url or url, pairs, auth_token)
        data = urllib.parse.urlencode(pairs).encode("utf-8")
        return self._post(
            "signed_form",
            url,
            data=data,
            timeout=timeout,
            headers={"Content-Type": "application/x-www-form-urlencoded", header: signature},
        )

    def post_ed25519_json(
        self,
        url: str,
        payload: Any,
        private_key: Ed25519PrivateKey,
        *,
        timestamp: int | None = None,
        separator: str = "",
        signature_header: str = "X-Signature-Ed25519",
        timestamp_header: str = "X-Signature-Timestamp",
        encoding: str = "hex",
        timeout: float = 10.0,
    ) -> requests.Response:
        """POST JSON signed with Ed25519 over ``timestamp + separator + body``."""
        body = json.dumps(payload).encode("utf-8")
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        signature = ed25519_sign(private_key, stamp, body, separator, encoding)
        return self._post(
            "ed25519_json",
            url,
            data=body,
            timeout=timeout,
            headers={
                "Content-Type": "application/json",
                signature_header: signature,
                timestamp_header: stamp,
            },
        )
