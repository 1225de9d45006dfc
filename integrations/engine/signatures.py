"""Verifying the signature of an inbound webhook (DESIGN 4.9), before anything is parsed.

A spec's `Webhook` may declare how its provider authenticates what it posts::

    "Webhook": {"signature": {"type": "hmac-sha1", "header": "X-Twilio-Signature",
                              "secret": "$Auth Token$"},
                "models": [...]}

`verify_signature` checks one raw request against that block and raises `SignatureInvalid`
(answer 401, store nothing) when the request is unsigned, badly signed or too old. It reads
only the raw body, the headers, the URL and (for `url+sorted-params`) the form fields, so it
runs before the body is parsed or stored. Secrets are templates rendered with the
installation's property values (`"$Auth Token$"`); messages never contain a secret or the
signature we expected.

Types (`type`):

* `hmac-sha1`, `hmac-sha256` — an HMAC of the `payload` keyed with `secret`, carried in
  `header` and encoded as `encoding` (`base64` or `hex`), optionally after a `prefix`
  (`sha256=` for GitHub, `v1,` for Standard Webhooks). The header may hold several signatures
  separated by spaces (key rotation); any one matching is enough. A secret written
  `whsec_<base64>` (Standard Webhooks) is the base64-decoded key.
  With `"header_format": "stripe"` (hmac-sha256 only), `header` holds Stripe's combined
  `t=<unix time>,v1=<hex>,v1=<hex>,v0=<hex>`: the HMAC is over `"{t}.{body}"`, keyed with the
  secret as written (Stripe's `whsec_...` is not decoded), any one `v1` matching is enough
  (other schemes such as `v0` are ignored) and `t` must be within `tolerance`.
  https://docs.stripe.com/webhooks#verify-manually
* `ed25519` — an Ed25519 signature of the `payload`; `secret` is the provider's public key
  (32 bytes, hex or base64). Verified with `cryptography`.
* `basic` — HTTP Basic credentials equal to `username` and `password`.
* `header` — the `header` equals `secret` (after `prefix`, if any).

Payloads (`payload`):

* `url+sorted-params` — Twilio's algorithm: the full URL the provider called, then for each
  POST field in name order, its name followed by its value (a repeated field adds each of
  its distinct values in order).
  https://www.twilio.com/docs/usage/security#validating-requests
* `body` — the raw body.
* `timestamp.body` — the `timestamp_header` value, `separator`, then the raw body; with
  `id_header`, the id and "." come first (Standard Webhooks: `id.timestamp.body`,
  https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md).
  The timestamp (Unix seconds) must be within `tolerance` seconds (default 300) of now.

Defaults: `hmac-sha1` signs `url+sorted-params` in base64; `hmac-sha256` signs
`timestamp.body` when a `timestamp_header` is given and `body` otherwise, in hex; `ed25519`
likewise, in hex. The separator is "." for HMAC and "" for Ed25519 (Discord's
`timestamp + body`; Telnyx uses "|").

Every comparison of secret material uses `hmac.compare_digest` (constant time).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from integrations.engine.templating import format_placeholder, placeholder_names, render_text
from integrations.engine.webhooks import WebhookRejected

if TYPE_CHECKING:
    from integrations.engine.webhooks import InboundRequest

__all__ = [
    "DEFAULT_TOLERANCE",
    "HEADER_FORMATS",
    "SIGNATURE_TYPES",
    "SignatureInvalid",
    "default_encoding",
    "default_payload",
    "verify_signature",
]

SIGNATURE_TYPES: Final = ("hmac-sha1", "hmac-sha256", "ed25519", "basic", "header")
#: How the signature header is laid out: `plain` (signatures, space-separated, each after
#: `prefix`) or `stripe` (`t=...,v1=...`; hmac-sha256 only).
HEADER_FORMATS: Final = ("plain", "stripe")
DEFAULT_TOLERANCE: Final = 300
_HASHES: Final = {"hmac-sha1": hashlib.sha1, "hmac-sha256": hashlib.sha256}
_STANDARD_WEBHOOKS_SECRET_PREFIX: Final = "whsec_"
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
# A provider's header may carry several signatures; more than this is not a real request.
_MAX_CANDIDATES: Final = 10


class SignatureInvalid(WebhookRejected):
    """The request is not signed as the spec requires: answer 401 and store nothing.

    A `WebhookRejected` whose `status` is 401, so a view that answers `WebhookRejected` with
    its status handles both. `message` says what is wrong (a missing header, a stale
    timestamp, a signature that does not match, a secret that is not configured) and never
    contains a secret.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, status=401)


def default_payload(signature: Mapping[str, Any]) -> str:
    """The payload a signature block signs when it does not say."""
    if signature.get("payload"):
        return str(signature["payload"])
    if signature.get("type") == "hmac-sha1":
        return "url+sorted-params"
    return "timestamp.body" if signature.get("timestamp_header") else "body"


def default_encoding(signature: Mapping[str, Any]) -> str:
    """How the signature is encoded in its header when the block does not say."""
    if signature.get("encoding"):
        return str(signature["encoding"])
    return "base64" if signature.get("type") == "hmac-sha1" else "hex"


def verify_signature(
    signature: Mapping[str, Any],
    request: InboundRequest,
    *,
    values: Mapping[str, Any],
    now: float | None = None,
    var_char: str = "$",
) -> None:
    """Check `request` against the spec's `signature` block; return None when it is genuine.

    `values` are the installation's property values by name (the secret templates are
    rendered with them); `now` is the current Unix time (for the timestamp tolerance);
    `var_char` is the spec's placeholder syntax.

    Raises SignatureInvalid when a header the block needs is missing, the timestamp is
    outside the tolerance, no signature matches, the secret is not configured, or the
    configured public key is not an Ed25519 key.
    """
    kind = signature.get("type")
    headers = {str(k).lower(): str(v) for k, v in request.headers.items()}
    if kind == "basic":
        _verify_basic(signature, headers, values, var_char)
        return
    if kind == "header":
        _verify_header(signature, headers, values, var_char)
        return
    if signature.get("header_format", "plain") == "stripe":
        _verify_stripe(signature, request, headers, values, now, var_char)
        return
    if kind not in _HASHES and kind != "ed25519":
        raise SignatureInvalid(f"unknown signature type {kind!r}")

    header_name = str(signature.get("header") or "")
    provided = headers.get(header_name.lower(), "").strip()
    if not provided:
        raise SignatureInvalid(f"missing {header_name} header (the request is not signed)")
    prefix = str(signature.get("prefix") or "")
    candidates = _candidates(provided, prefix)
    if not candidates:
        raise SignatureInvalid(f"{header_name} header has no signature starting with {prefix!r}")
    encoding = default_encoding(signature)
    decoded = [d for d in (_decode(c, encoding) for c in candidates) if d is not None]
    if not decoded:
        raise SignatureInvalid(f"{header_name} header is not a {encoding} signature")

    secret = _secret(signature, "secret", values, var_char)
    messages = _messages(signature, request, headers, now)
    if kind == "ed25519":
        key = _public_key(secret, signature, var_char)
        for message in messages:
            for candidate in decoded:
                try:
                    key.verify(candidate, message)
                except InvalidSignature:
                    continue
                return
    else:
        key_bytes = _hmac_key(secret)
        digest = _HASHES[kind]
        for message in messages:
            expected = hmac.new(key_bytes, message, digest).digest()
            # Every candidate is compared (no early exit on the first byte that differs).
            matched = False
            for candidate in decoded:
                matched |= hmac.compare_digest(expected, candidate)
            if matched:
                return
    raise SignatureInvalid(f"{header_name} signature does not match")


# --------------------------------------------------------------------------------------------
# Secrets


def _secret(
    signature: Mapping[str, Any], key: str, values: Mapping[str, Any], var_char: str
) -> str:
    template = signature.get(key)
    text = render_text(str(template), values, var_char) if template else ""
    if not text:
        names = placeholder_names(str(template or ""), var_char)
        what = ", ".join(format_placeholder(n, var_char) for n in names) or f"the {key}"
        raise SignatureInvalid(f"the webhook signature's {key} is not configured (set {what})")
    return text


def _hmac_key(secret: str) -> bytes:
    if secret.startswith(_STANDARD_WEBHOOKS_SECRET_PREFIX):
        # Standard Webhooks secrets are `whsec_` + the base64 of the key bytes.
        encoded = secret[len(_STANDARD_WEBHOOKS_SECRET_PREFIX) :]
        try:
            return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise SignatureInvalid(
                "the webhook secret starts with whsec_ but is not base64"
            ) from None
    return secret.encode("utf-8")


def _public_key(secret: str, signature: Mapping[str, Any], var_char: str) -> Ed25519PublicKey:
    text = secret.strip()
    raw: bytes | None = None
    if len(text) == 64:
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raw = None
    if raw is None:
        try:
            raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            raw = None
    if raw is None or len(raw) != 32:
        names = placeholder_names(str(signature.get("secret") or ""), var_char)
        what = ", ".join(format_placeholder(n, var_char) for n in names) or "the secret"
        raise SignatureInvalid(f"{what} is not an Ed25519 public key (32 bytes, hex or base64)")
    return Ed25519PublicKey.from_public_bytes(raw)


# --------------------------------------------------------------------------------------------
# Signature header


def _candidates(provided: str, prefix: str) -> list[str]:
    """The signatures in a header: space-separated, each after `prefix` when there is one."""
    found = []
    for item in provided.split()[:_MAX_CANDIDATES]:
        if prefix:
            if not item.startswith(prefix):
                continue  # another scheme or version (Standard Webhooks' `v1a,`)
            item = item[len(prefix) :]
        found.append(item)
    return found


def _decode(text: str, encoding: str) -> bytes | None:
    try:
        if encoding == "hex":
            return bytes.fromhex(text)
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


# --------------------------------------------------------------------------------------------
# Signed payloads


def _messages(
    signature: Mapping[str, Any],
    request: InboundRequest,
    headers: Mapping[str, str],
    now: float | None,
) -> list[bytes]:
    """The byte strings the provider may have signed (several only for URL variants)."""
    payload = default_payload(signature)
    if payload == "body":
        return [request.body]
    if payload == "timestamp.body":
        default_separator = "" if signature.get("type") == "ed25519" else "."
        separator = str(signature.get("separator", default_separator))
        stamp = _checked_timestamp(signature, headers, now)
        prefix = ""
        id_header = signature.get("id_header")
        if id_header:
            message_id = headers.get(str(id_header).lower(), "")
            if not message_id:
                raise SignatureInvalid(f"missing {id_header} header")
            prefix = message_id + "."
        return [(prefix + stamp + separator).encode("utf-8") + request.body]
    if payload == "url+sorted-params":
        params = _form_params(request)
        tail = "".join(name + value for name in sorted(params) for value in sorted(params[name]))
        return [(url + tail).encode("utf-8") for url in _url_variants(request.url)]
    raise SignatureInvalid(f"unknown signature payload {payload!r}")


def _checked_timestamp(
    signature: Mapping[str, Any], headers: Mapping[str, str], now: float | None
) -> str:
    header = str(signature.get("timestamp_header") or "")
    stamp = headers.get(header.lower(), "").strip() if header else ""
    if not stamp:
        raise SignatureInvalid(f"missing {header or 'timestamp'} header")
    try:
        moment = float(stamp)
    except ValueError:
        raise SignatureInvalid(f"{header} header is not a Unix timestamp") from None
    _check_age(moment, header, signature, now)
    return stamp


def _check_age(moment: float, what: str, signature: Mapping[str, Any], now: float | None) -> None:
    """Raise SignatureInvalid unless `moment` (Unix time) is within the tolerance of now.

    `what` names the timestamp in the message.
    """
    if moment > 100_000_000_000:
        moment /= 1000  # milliseconds
    tolerance = signature.get("tolerance", DEFAULT_TOLERANCE)
    current = time.time() if now is None else now
    age = current - moment
    if abs(age) > float(tolerance):
        when = "old" if age > 0 else "in the future"
        raise SignatureInvalid(
            f"{what} is {abs(int(age))} s {when}; more than the {tolerance} s allowed"
        )


def _form_params(request: InboundRequest) -> dict[str, set[str]]:
    """POST form fields by name (Twilio signs only form fields; the query is in the URL)."""
    media_type = request.content_type.split(";", 1)[0].strip().lower()
    if request.method.upper() == "GET" or media_type != "application/x-www-form-urlencoded":
        return {}
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError:
        raise SignatureInvalid("form body is not UTF-8") from None
    params: dict[str, set[str]] = {}
    for name, value in parse_qsl(text, keep_blank_values=True):
        params.setdefault(name, set()).add(value)
    return params


def _url_variants(url: str) -> list[str]:
    """The URL as given, then with its default port added or removed.

    Twilio signs the URL it was configured with; a proxy may add or drop `:443`, so its own
    helper library accepts either form.
    """
    if not url:
        raise SignatureInvalid("the request URL is needed to check this signature")
    parts = urlsplit(url)
    default = _DEFAULT_PORTS.get(parts.scheme)
    variants = [url]
    if default is None or not parts.hostname:
        return variants
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    userinfo = parts.netloc.rpartition("@")[0]
    userinfo = userinfo + "@" if userinfo else ""
    if parts.port is None:
        netloc = f"{userinfo}{host}:{default}"
    elif parts.port == default:
        netloc = f"{userinfo}{host}"
    else:
        return variants
    variants.append(urlunsplit(parts._replace(netloc=netloc)))
    return variants


# --------------------------------------------------------------------------------------------
# Stripe's combined header


def _verify_stripe(
    signature: Mapping[str, Any],
    request: InboundRequest,
    headers: Mapping[str, str],
    values: Mapping[str, Any],
    now: float | None,
    var_char: str,
) -> None:
    """`t=<time>,v1=<hex>[,v1=<hex>...]`: an HMAC-SHA256 of `"{t}.{body}"` in hex."""
    if signature.get("type") != "hmac-sha256":
        raise SignatureInvalid("the stripe header_format needs an hmac-sha256 signature")
    header_name = str(signature.get("header") or "")
    provided = headers.get(header_name.lower(), "").strip()
    if not provided:
        raise SignatureInvalid(f"missing {header_name} header (the request is not signed)")
    stamp = ""
    candidates: list[bytes] = []
    for item in provided.split(",")[: 4 * _MAX_CANDIDATES]:
        key, separator, value = item.strip().partition("=")
        if not separator:
            continue
        if key == "t" and not stamp:
            stamp = value.strip()
        elif key == "v1" and len(candidates) < _MAX_CANDIDATES:
            decoded = _decode(value.strip(), "hex")
            if decoded is not None:
                candidates.append(decoded)
    if not stamp:
        raise SignatureInvalid(f"{header_name} header has no timestamp (t=)")
    if not candidates:
        raise SignatureInvalid(f"{header_name} header has no v1 signature")
    try:
        moment = float(stamp)
    except ValueError:
        raise SignatureInvalid(f"{header_name} timestamp (t=) is not a Unix timestamp") from None
    _check_age(moment, f"{header_name} timestamp (t=)", signature, now)
    # Stripe keys the HMAC with the signing secret as written, `whsec_` included.
    key_bytes = _secret(signature, "secret", values, var_char).encode("utf-8")
    expected = hmac.new(key_bytes, stamp.encode("utf-8") + b"." + request.body, hashlib.sha256)
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected.digest(), candidate)
    if not matched:
        raise SignatureInvalid(f"{header_name} signature does not match")


# --------------------------------------------------------------------------------------------
# Credentials compared directly


def _verify_basic(
    signature: Mapping[str, Any], headers: Mapping[str, str], values: Mapping[str, Any], var: str
) -> None:
    username = _secret(signature, "username", values, var)
    password = _secret(signature, "password", values, var)
    scheme, _, credential = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not credential.strip():
        raise SignatureInvalid("missing Authorization header (Basic credentials)")
    try:
        decoded = base64.b64decode(credential.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureInvalid("Authorization header is not valid Basic credentials") from None
    given_user, separator, given_password = decoded.partition(b":")
    if not separator:
        raise SignatureInvalid("Authorization header is not valid Basic credentials")
    user_ok = hmac.compare_digest(given_user, username.encode("utf-8"))
    password_ok = hmac.compare_digest(given_password, password.encode("utf-8"))
    if not (user_ok and password_ok):
        raise SignatureInvalid("Basic credentials do not match")


def _verify_header(
    signature: Mapping[str, Any], headers: Mapping[str, str], values: Mapping[str, Any], var: str
) -> None:
    header_name = str(signature.get("header") or "")
    secret = _secret(signature, "secret", values, var)
    provided = headers.get(header_name.lower())
    if provided is None or provided == "":
        raise SignatureInvalid(f"missing {header_name} header")
    expected = str(signature.get("prefix") or "") + secret
    if not hmac.compare_digest(provided.strip().encode("utf-8"), expected.encode("utf-8")):
        raise SignatureInvalid(f"{header_name} header does not match")
