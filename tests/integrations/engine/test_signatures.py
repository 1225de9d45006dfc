"""Webhook signature verification (DESIGN 4.9): every type, published test vectors, refusals."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from standardwebhooks.webhooks import Webhook as StandardWebhook

from integrations.engine import signatures
from integrations.engine.signatures import SignatureInvalid, verify_signature
from integrations.engine.spec import load_spec, validate_spec
from integrations.engine.webhooks import InboundRequest, WebhookRejected, match_webhook
from integrations.sandbox.sms import ed25519_sign, twilio_inbound_params, twilio_signature

NOW = 1_700_000_000.0
FORM = "application/x-www-form-urlencoded"

# Twilio's documented example (https://www.twilio.com/docs/usage/security, and the tests of
# its helper libraries): auth token 12345 signs this URL and these fields as below.
TWILIO_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
TWILIO_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+14158675309",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
}
TWILIO_SIGNATURE = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
TWILIO_BLOCK = {"type": "hmac-sha1", "header": "X-Twilio-Signature", "secret": "$Auth Token$"}

# RFC 8032 section 7.1, TEST 2: a one-byte message.
RFC8032_PUBLIC = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"
RFC8032_SECRET = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb"
RFC8032_MESSAGE = bytes.fromhex("72")
RFC8032_SIGNATURE = (
    "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
    "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
)


def inbound(
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    *,
    url: str = "",
    content_type: str = "application/json",
    method: str = "POST",
) -> InboundRequest:
    return InboundRequest(method, content_type, body, {}, dict(headers or {}), url)


def twilio_request(signature: str = TWILIO_SIGNATURE, **changes: str) -> InboundRequest:
    params = {**TWILIO_PARAMS, **changes}
    return inbound(
        urlencode(params).encode(),
        {"X-Twilio-Signature": signature},
        url=TWILIO_URL,
        content_type=FORM,
    )


def verify(block: Mapping[str, Any], request: InboundRequest, **values: Any) -> None:
    verify_signature(block, request, values=values, now=NOW)


# --------------------------------------------------------------------------------------------
# hmac-sha1 (Twilio)


def test_twilio_published_example_verifies() -> None:
    verify(TWILIO_BLOCK, twilio_request(), **{"Auth Token": "12345"})


def test_twilio_example_is_reproduced_by_our_hmac() -> None:
    payload = TWILIO_URL + "".join(k + TWILIO_PARAMS[k] for k in sorted(TWILIO_PARAMS))
    digest = hmac.new(b"12345", payload.encode(), hashlib.sha1).digest()
    assert base64.b64encode(digest).decode() == TWILIO_SIGNATURE


def test_twilio_wrong_token_is_refused() -> None:
    with pytest.raises(SignatureInvalid, match="does not match") as caught:
        verify(TWILIO_BLOCK, twilio_request(), **{"Auth Token": "54321"})
    assert caught.value.status == 401
    assert "54321" not in caught.value.message


def test_twilio_tampered_field_is_refused() -> None:
    with pytest.raises(SignatureInvalid):
        verify(TWILIO_BLOCK, twilio_request(Digits="9999"), **{"Auth Token": "12345"})


def test_twilio_signature_covers_the_url() -> None:
    request = twilio_request()
    moved = InboundRequest(
        request.method,
        request.content_type,
        request.body,
        {},
        request.headers,
        "https://mycompany.com/other.php?foo=1&bar=2",
    )
    with pytest.raises(SignatureInvalid):
        verify(TWILIO_BLOCK, moved, **{"Auth Token": "12345"})


def test_twilio_url_with_default_port_still_verifies() -> None:
    # A proxy may add :443 to the URL the portal sees; Twilio signed the URL without it.
    request = twilio_request()
    with_port = InboundRequest(
        request.method,
        request.content_type,
        request.body,
        {},
        request.headers,
        "https://mycompany.com:443/myapp.php?foo=1&bar=2",
    )
    verify(TWILIO_BLOCK, with_port, **{"Auth Token": "12345"})


def test_twilio_repeated_and_numbered_fields_match_the_sandbox_signer() -> None:
    url = "https://portal.example/services/twilio/a1001"
    params = twilio_inbound_params(
        "+15551230000", "+15551239999", "look", ["https://m.example/1", "https://m.example/2"]
    )
    pairs = [*params.items(), ("Tag", "b"), ("Tag", "a")]
    signature = twilio_signature(url, pairs, "tok")
    request = inbound(
        urlencode(pairs).encode(), {"X-Twilio-Signature": signature}, url=url, content_type=FORM
    )
    verify(TWILIO_BLOCK, request, **{"Auth Token": "tok"})


def test_missing_signature_header_is_refused() -> None:
    request = inbound(urlencode(TWILIO_PARAMS).encode(), {}, url=TWILIO_URL, content_type=FORM)
    with pytest.raises(SignatureInvalid, match="missing X-Twilio-Signature header"):
        verify(TWILIO_BLOCK, request, **{"Auth Token": "12345"})


def test_unconfigured_secret_names_the_property_not_a_value() -> None:
    with pytest.raises(SignatureInvalid, match=r"not configured \(set \$Auth Token\$\)"):
        verify(TWILIO_BLOCK, twilio_request())


def test_signature_that_is_not_base64_is_refused() -> None:
    with pytest.raises(SignatureInvalid, match="not a base64 signature"):
        verify(TWILIO_BLOCK, twilio_request("%%%not-base64%%%"), **{"Auth Token": "12345"})


# --------------------------------------------------------------------------------------------
# hmac-sha256


def github_request(body: bytes, secret: str) -> InboundRequest:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return inbound(body, {"X-Hub-Signature-256": f"sha256={digest}"})


GITHUB_BLOCK = {
    "type": "hmac-sha256",
    "header": "X-Hub-Signature-256",
    "prefix": "sha256=",
    "secret": "$Webhook Secret$",
}


def test_hmac_sha256_over_body_hex_with_prefix() -> None:
    body = b'{"action":"opened"}'
    verify(GITHUB_BLOCK, github_request(body, "s3cret"), **{"Webhook Secret": "s3cret"})


def test_hmac_sha256_hex_is_case_insensitive() -> None:
    body = b"{}"
    digest = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest().upper()
    request = inbound(body, {"x-hub-signature-256": f"sha256={digest}"})
    verify(GITHUB_BLOCK, request, **{"Webhook Secret": "s3cret"})


def test_hmac_sha256_changed_body_is_refused() -> None:
    request = github_request(b'{"a":1}', "s3cret")
    changed = inbound(b'{"a":2}', request.headers)
    with pytest.raises(SignatureInvalid, match="does not match"):
        verify(GITHUB_BLOCK, changed, **{"Webhook Secret": "s3cret"})


def test_hmac_sha256_without_the_prefix_is_refused() -> None:
    body = b"{}"
    digest = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    with pytest.raises(SignatureInvalid, match="no signature starting with 'sha256='"):
        verify(
            GITHUB_BLOCK,
            inbound(body, {"X-Hub-Signature-256": digest}),
            **{"Webhook Secret": "s3cret"},
        )


STANDARD_BLOCK = {
    "type": "hmac-sha256",
    "header": "webhook-signature",
    "id_header": "webhook-id",
    "timestamp_header": "webhook-timestamp",
    "payload": "timestamp.body",
    "encoding": "base64",
    "prefix": "v1,",
    "secret": "$Signing Secret$",
}
STANDARD_SECRET = "whsec_" + base64.b64encode(b"a standard webhooks key, 32 byte").decode()


def standard_request(body: bytes, *, timestamp: float = NOW, secret: str = STANDARD_SECRET):
    signer = StandardWebhook(secret)
    moment = dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)
    signature = signer.sign("msg_2Lq8", moment, body.decode())
    headers = {
        "webhook-id": "msg_2Lq8",
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": signature,
    }
    return inbound(body, headers)


def test_standard_webhooks_signature_from_the_reference_library_verifies() -> None:
    body = json.dumps({"type": "call.completed", "data": {"id": "c1"}}).encode()
    verify(STANDARD_BLOCK, standard_request(body), **{"Signing Secret": STANDARD_SECRET})


def test_standard_webhooks_reference_library_accepts_what_we_verify() -> None:
    # The other direction: the reference verifier accepts the same request (now = its clock).
    body = b'{"ok":true}'
    request = standard_request(body, timestamp=dt.datetime.now(dt.UTC).timestamp())
    StandardWebhook(STANDARD_SECRET).verify(body, dict(request.headers))
    verify_signature(STANDARD_BLOCK, request, values={"Signing Secret": STANDARD_SECRET})


def test_standard_webhooks_several_signatures_one_valid() -> None:
    body = b'{"rotated":true}'
    request = standard_request(body)
    good = request.headers["webhook-signature"]
    stale = "v1," + base64.b64encode(b"x" * 32).decode()
    headers = {**request.headers, "webhook-signature": f"v1a,abc {stale} {good}"}
    verify(STANDARD_BLOCK, inbound(body, headers), **{"Signing Secret": STANDARD_SECRET})


def test_standard_webhooks_stale_timestamp_is_refused() -> None:
    body = b"{}"
    request = standard_request(body, timestamp=NOW - 301)
    with pytest.raises(SignatureInvalid, match=r"webhook-timestamp is 301 s old"):
        verify(STANDARD_BLOCK, request, **{"Signing Secret": STANDARD_SECRET})


def test_standard_webhooks_future_timestamp_is_refused() -> None:
    request = standard_request(b"{}", timestamp=NOW + 600)
    with pytest.raises(SignatureInvalid, match="in the future"):
        verify(STANDARD_BLOCK, request, **{"Signing Secret": STANDARD_SECRET})


def test_custom_tolerance() -> None:
    request = standard_request(b"{}", timestamp=NOW - 3000)
    block = {**STANDARD_BLOCK, "tolerance": 3600}
    verify(block, request, **{"Signing Secret": STANDARD_SECRET})


def test_missing_id_or_timestamp_header_is_refused() -> None:
    request = standard_request(b"{}")
    for header in ("webhook-id", "webhook-timestamp"):
        headers = {k: v for k, v in request.headers.items() if k != header}
        with pytest.raises(SignatureInvalid, match=f"missing {header}"):
            verify(STANDARD_BLOCK, inbound(b"{}", headers), **{"Signing Secret": STANDARD_SECRET})


def test_replayed_signature_with_a_new_timestamp_is_refused() -> None:
    request = standard_request(b"{}", timestamp=NOW - 100)
    headers = {**request.headers, "webhook-timestamp": str(int(NOW))}
    with pytest.raises(SignatureInvalid, match="does not match"):
        verify(STANDARD_BLOCK, inbound(b"{}", headers), **{"Signing Secret": STANDARD_SECRET})


def test_stripe_style_timestamp_dot_body_without_id() -> None:
    body = b'{"id":"evt_1"}'
    stamp = str(int(NOW))
    digest = hmac.new(b"k", f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    block = {
        "type": "hmac-sha256",
        "header": "X-Signature",
        "timestamp_header": "X-Timestamp",
        "secret": "$Key$",
    }
    verify(block, inbound(body, {"X-Signature": digest, "X-Timestamp": stamp}), Key="k")


# --------------------------------------------------------------------------------------------
# ed25519


def test_rfc8032_test_vector_2_verifies_with_cryptography() -> None:
    private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(RFC8032_SECRET))
    public = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert public.hex() == RFC8032_PUBLIC
    assert private.sign(RFC8032_MESSAGE).hex() == RFC8032_SIGNATURE
    Ed25519PublicKey.from_public_bytes(public).verify(
        bytes.fromhex(RFC8032_SIGNATURE), RFC8032_MESSAGE
    )


def test_rfc8032_test_vector_2_through_verify_signature() -> None:
    block = {"type": "ed25519", "header": "X-Signature", "secret": "$Public Key$"}
    request = inbound(RFC8032_MESSAGE, {"X-Signature": RFC8032_SIGNATURE})
    verify(block, request, **{"Public Key": RFC8032_PUBLIC})
    public_base64 = base64.b64encode(bytes.fromhex(RFC8032_PUBLIC)).decode()
    verify(block, request, **{"Public Key": public_base64})
    with pytest.raises(SignatureInvalid, match="does not match"):
        verify(block, inbound(b"\x73", request.headers), **{"Public Key": RFC8032_PUBLIC})


DISCORD_BLOCK = {
    "type": "ed25519",
    "header": "X-Signature-Ed25519",
    "timestamp_header": "X-Signature-Timestamp",
    "secret": "$Public Key$",
}


def discord_request(key: Ed25519PrivateKey, body: bytes, stamp: str) -> InboundRequest:
    return inbound(
        body,
        {"X-Signature-Ed25519": ed25519_sign(key, stamp, body), "X-Signature-Timestamp": stamp},
    )


def public_hex(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


def test_ed25519_over_timestamp_and_body() -> None:
    key = Ed25519PrivateKey.generate()
    request = discord_request(key, b'{"type":1}', str(int(NOW)))
    verify(DISCORD_BLOCK, request, **{"Public Key": public_hex(key)})


def test_ed25519_other_key_is_refused() -> None:
    request = discord_request(Ed25519PrivateKey.generate(), b"{}", str(int(NOW)))
    other = public_hex(Ed25519PrivateKey.generate())
    with pytest.raises(SignatureInvalid, match="does not match"):
        verify(DISCORD_BLOCK, request, **{"Public Key": other})


def test_ed25519_stale_timestamp_is_refused() -> None:
    key = Ed25519PrivateKey.generate()
    request = discord_request(key, b"{}", str(int(NOW - 1000)))
    with pytest.raises(SignatureInvalid, match="1000 s old"):
        verify(DISCORD_BLOCK, request, **{"Public Key": public_hex(key)})


def test_ed25519_bad_public_key_is_reported_without_its_value() -> None:
    key = Ed25519PrivateKey.generate()
    request = discord_request(key, b"{}", str(int(NOW)))
    with pytest.raises(SignatureInvalid, match=r"\$Public Key\$ is not an Ed25519") as caught:
        verify(DISCORD_BLOCK, request, **{"Public Key": "abcd"})
    assert "abcd" not in caught.value.message


def test_ed25519_with_separator_and_base64() -> None:
    key = Ed25519PrivateKey.generate()
    stamp = str(int(NOW))
    body = b'{"data":{}}'
    signature = ed25519_sign(key, stamp, body, separator="|", encoding="base64")
    block = {**DISCORD_BLOCK, "separator": "|", "encoding": "base64"}
    headers = {"X-Signature-Ed25519": signature, "X-Signature-Timestamp": stamp}
    verify(block, inbound(body, headers), **{"Public Key": public_hex(key)})


# --------------------------------------------------------------------------------------------
# basic and header


BASIC_BLOCK = {"type": "basic", "username": "$Hook User$", "password": "$Hook Password$"}


def basic_header(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_basic_credentials() -> None:
    values = {"Hook User": "ringrx", "Hook Password": "pa:ss"}
    verify(BASIC_BLOCK, inbound(b"{}", basic_header("ringrx", "pa:ss")), **values)
    for user, password in (("ringrx", "nope"), ("other", "pa:ss")):
        with pytest.raises(SignatureInvalid, match="Basic credentials do not match"):
            verify(BASIC_BLOCK, inbound(b"{}", basic_header(user, password)), **values)
    with pytest.raises(SignatureInvalid, match="missing Authorization"):
        verify(BASIC_BLOCK, inbound(b"{}", {}), **values)
    with pytest.raises(SignatureInvalid, match="not valid Basic"):
        verify(BASIC_BLOCK, inbound(b"{}", {"Authorization": "Basic ???"}), **values)


def test_header_equals_secret() -> None:
    block = {"type": "header", "header": "X-Webhook-Token", "secret": "$Token$"}
    verify(block, inbound(b"{}", {"x-webhook-token": "t0k"}), Token="t0k")
    with pytest.raises(SignatureInvalid, match="X-Webhook-Token header does not match"):
        verify(block, inbound(b"{}", {"X-Webhook-Token": "t0k2"}), Token="t0k")
    with pytest.raises(SignatureInvalid, match="missing X-Webhook-Token header"):
        verify(block, inbound(b"{}", {}), Token="t0k")


def test_header_with_prefix() -> None:
    block = {"type": "header", "header": "Authorization", "prefix": "Bearer ", "secret": "$T$"}
    verify(block, inbound(b"{}", {"Authorization": "Bearer abc"}), T="abc")
    with pytest.raises(SignatureInvalid):
        verify(block, inbound(b"{}", {"Authorization": "abc"}), T="abc")


# --------------------------------------------------------------------------------------------
# Constant time, ordering and wiring


@pytest.mark.parametrize(
    ("block", "request_", "values"),
    [
        (TWILIO_BLOCK, twilio_request(), {"Auth Token": "12345"}),
        (GITHUB_BLOCK, github_request(b"{}", "s"), {"Webhook Secret": "s"}),
        (
            BASIC_BLOCK,
            inbound(b"", basic_header("u", "p")),
            {"Hook User": "u", "Hook Password": "p"},
        ),
        (
            {"type": "header", "header": "X-T", "secret": "$T$"},
            inbound(b"", {"X-T": "v"}),
            {"T": "v"},
        ),
    ],
    ids=["hmac-sha1", "hmac-sha256", "basic", "header"],
)
def test_secrets_are_compared_in_constant_time(
    monkeypatch: pytest.MonkeyPatch,
    block: Mapping[str, Any],
    request_: InboundRequest,
    values: dict[str, Any],
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def recording(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(signatures.hmac, "compare_digest", recording)
    verify(block, request_, **values)
    assert calls, "compare_digest was not used"


def test_signature_invalid_is_a_401_webhook_rejection() -> None:
    error = SignatureInvalid("x")
    assert isinstance(error, WebhookRejected)
    assert error.status == 401


def signed_spec() -> Any:
    return load_spec(
        {
            "id": "signed",
            "name": "Signed",
            "class": "sms",
            "properties": [{"name": "Auth Token", "type": "secret"}],
            "API": {
                "SendMessage": {"request_method": "POST", "request_url": "https://sms.example/m"}
            },
            "Webhook": {
                "signature": TWILIO_BLOCK,
                "models": [
                    {
                        "event_key": "received",
                        "request_parameters": {
                            "SmsStatus": "$event_key$",
                            "From": "$from$",
                            "To": "$to$",
                            "Body": "$content$",
                        },
                    }
                ],
            },
        }
    )


def test_match_webhook_verifies_by_default_before_parsing() -> None:
    spec = signed_spec()
    with pytest.raises(SignatureInvalid, match="missing X-Twilio-Signature"):
        match_webhook(
            spec,
            method="POST",
            content_type="application/json",
            body=b"{not json",
            query={},
            headers={},
            url="https://portal.example/hook",
            properties={"Auth Token": "tok"},
        )


def test_match_webhook_with_good_signature_matches() -> None:
    spec = signed_spec()
    url = "https://portal.example/services/x/a1"
    params = {"SmsStatus": "received", "From": "+15551230000", "To": "+15551239999", "Body": "hi"}
    match = match_webhook(
        spec,
        method="POST",
        content_type=FORM,
        body=urlencode(params).encode(),
        query={},
        headers={"X-Twilio-Signature": twilio_signature(url, params, "tok")},
        url=url,
        properties={"Auth Token": "tok"},
    )
    assert match is not None
    assert match.values["content"] == "hi"


def test_match_webhook_without_properties_fails_closed() -> None:
    with pytest.raises(SignatureInvalid, match="not configured"):
        match_webhook(
            signed_spec(),
            method="POST",
            content_type=FORM,
            body=b"From=x",
            query={},
            headers={"X-Twilio-Signature": "abc="},
            url="https://portal.example/hook",
        )


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"type": "hmac-sha256", "header": "X-S"}, "needs a secret"),
        ({"type": "hmac-sha256", "secret": "$K$"}, "needs the header"),
        ({"type": "basic", "username": "$K$"}, "needs username and password"),
        (
            {"type": "hmac-sha256", "header": "X-S", "secret": "$K$", "payload": "timestamp.body"},
            "needs timestamp_header",
        ),
        (
            {"type": "ed25519", "header": "X-S", "secret": "$K$", "payload": "url+sorted-params"},
            "ed25519 signs the body",
        ),
        (
            {"type": "header", "header": "X-S", "secret": "$K$", "encoding": "hex"},
            "has no encoding",
        ),
        ({"type": "hmac-sha1", "header": "X-S", "secret": "$Nope$"}, "unknown placeholder $Nope$"),
        ({"type": "rsa", "header": "X-S", "secret": "$K$"}, "is not one of"),
    ],
)
def test_signature_blocks_are_validated(block: dict[str, Any], message: str) -> None:
    data = {
        "id": "s",
        "name": "S",
        "class": "sms",
        "properties": ["K"],
        "API": {"SendMessage": {"request_method": "POST", "request_url": "https://x.example/"}},
        "Webhook": {"signature": block, "models": []},
    }
    problems = [str(p) for p in validate_spec(data)]
    assert any(message in p and p.startswith("/Webhook/signature") for p in problems), problems
