"""Stripe's combined signature header (`"header_format": "stripe"` on an hmac-sha256 block).

`Stripe-Signature: t=<unix time>,v1=<hex>[,v1=<hex>...][,v0=<hex>]`, each v1 the HMAC-SHA256
of `"{t}.{body}"` keyed with the signing secret as written
(https://docs.stripe.com/webhooks#verify-manually). Expected signatures are computed here with
`hmac`, independently of the engine.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import pytest

from integrations.engine import signatures
from integrations.engine.signatures import SignatureInvalid, verify_signature
from integrations.engine.spec import validate_spec
from integrations.engine.webhooks import InboundRequest

NOW = 1_492_774_600.0
STAMP = 1_492_774_577  # the timestamp of Stripe's documented header example
SECRET = "whsec_test_secret"  # a Stripe signing secret is used as written, whsec_ included
BODY = b'{"id":"evt_1","type":"payment_intent.succeeded"}'
BLOCK = {
    "type": "hmac-sha256",
    "header": "Stripe-Signature",
    "header_format": "stripe",
    "secret": "$Signing Secret$",
}
VALUES = {"Signing Secret": SECRET}


def stripe_v1(body: bytes, stamp: int | str = STAMP, secret: str = SECRET) -> str:
    signed = f"{stamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def request(header: str | None, body: bytes = BODY) -> InboundRequest:
    headers = {} if header is None else {"Stripe-Signature": header}
    return InboundRequest("POST", "application/json", body, {}, headers, "")


def verify(
    req: InboundRequest, *, block: Mapping[str, Any] = BLOCK, now: float = NOW, **values: Any
) -> None:
    verify_signature(block, req, values=values or VALUES, now=now)


def test_the_docs_worked_example() -> None:
    signed = f"{STAMP}.".encode() + b'{"id":"evt_1"}'
    expected = hmac.new(b"whsec_test_secret", signed, hashlib.sha256).hexdigest()
    assert expected == "799c4ba7bb339f3c8601adfd112f0e477c930a268be1243d341abb8286501c2f"
    verify(request(f"t={STAMP},v1={expected}", b'{"id":"evt_1"}'))


def test_a_valid_header_is_accepted() -> None:
    verify(request(f"t={STAMP},v1={stripe_v1(BODY)}"))


def test_v0_and_unknown_schemes_are_ignored() -> None:
    v0 = hmac.new(SECRET.encode(), BODY, hashlib.sha1).hexdigest()
    verify(request(f"t={STAMP},v1={stripe_v1(BODY)},v0={v0},v2=zz"))
    with pytest.raises(SignatureInvalid, match="no v1 signature"):
        verify(request(f"t={STAMP},v0={stripe_v1(BODY)}"))


@pytest.mark.parametrize("position", [0, 1, 2])
def test_any_one_matching_v1_is_enough(position: int) -> None:
    others = [stripe_v1(BODY, secret="whsec_old"), stripe_v1(BODY, secret="whsec_other")]
    others.insert(position, stripe_v1(BODY))
    verify(request(f"t={STAMP}," + ",".join(f"v1={s}" for s in others)))


def test_no_matching_v1_is_refused() -> None:
    header = f"t={STAMP},v1={stripe_v1(BODY, secret='whsec_old')},v1={'ab' * 32}"
    with pytest.raises(SignatureInvalid, match="Stripe-Signature signature does not match") as e:
        verify(request(header))
    assert e.value.status == 401
    assert SECRET not in e.value.message


def test_a_changed_body_is_refused() -> None:
    header = f"t={STAMP},v1={stripe_v1(BODY)}"
    with pytest.raises(SignatureInvalid, match="does not match"):
        verify(request(header, BODY.replace(b"succeeded", b"failed")))


def test_the_timestamp_is_signed() -> None:
    header = f"t={STAMP + 1},v1={stripe_v1(BODY)}"
    with pytest.raises(SignatureInvalid, match="does not match"):
        verify(request(header))


def test_the_whsec_secret_is_not_base64_decoded() -> None:
    # Valid base64 after whsec_: Standard Webhooks would decode it; Stripe keys with the text.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    verify(request(f"t={STAMP},v1={stripe_v1(BODY, secret=secret)}"), **{"Signing Secret": secret})


def test_a_stale_timestamp_is_refused() -> None:
    header = f"t={STAMP},v1={stripe_v1(BODY)}"
    with pytest.raises(SignatureInvalid, match=r"timestamp \(t=\) is 301 s old"):
        verify(request(header), now=STAMP + 301)


def test_a_future_timestamp_is_refused() -> None:
    header = f"t={STAMP},v1={stripe_v1(BODY)}"
    with pytest.raises(SignatureInvalid, match="in the future"):
        verify(request(header), now=STAMP - 600)


def test_custom_tolerance() -> None:
    header = f"t={STAMP},v1={stripe_v1(BODY)}"
    verify(request(header), block={**BLOCK, "tolerance": 3600}, now=STAMP + 3000)
    with pytest.raises(SignatureInvalid, match="more than the 10 s allowed"):
        verify(request(header), block={**BLOCK, "tolerance": 10}, now=STAMP + 11)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "missing Stripe-Signature header"),
        (f"v1={'ab' * 32}", r"no timestamp \(t=\)"),
        (f"t=yesterday,v1={'ab' * 32}", "is not a Unix timestamp"),
        (f"t={STAMP}", "no v1 signature"),
        (f"t={STAMP},v1=not-hex", "no v1 signature"),
    ],
)
def test_malformed_headers_are_refused(header: str | None, message: str) -> None:
    with pytest.raises(SignatureInvalid, match=message):
        verify(request(header))


def test_the_secret_must_be_configured() -> None:
    with pytest.raises(SignatureInvalid, match="not configured"):
        verify_signature(BLOCK, request(f"t={STAMP},v1={stripe_v1(BODY)}"), values={}, now=NOW)


def test_v1_signatures_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def recording(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(signatures.hmac, "compare_digest", recording)
    verify(request(f"t={STAMP},v1={'ab' * 32},v1={stripe_v1(BODY)}"))
    assert len(calls) == 2  # every candidate is compared


# -- validation ---------------------------------------------------------------------------


def spec_with(block: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": "s",
        "name": "S",
        "class": "sms",
        "properties": ["Signing Secret"],
        "API": {"SendMessage": {"request_method": "POST", "request_url": "https://x.example/"}},
        "Webhook": {"signature": dict(block), "models": []},
    }


def test_a_stripe_block_is_valid() -> None:
    assert validate_spec(spec_with({**BLOCK, "tolerance": 600})) == []
    assert validate_spec(spec_with({**BLOCK, "header_format": "plain"})) == []


@pytest.mark.parametrize(
    ("changes", "pointer", "message"),
    [
        ({"header_format": "combined"}, "/Webhook/signature/header_format", "is not one of"),
        ({"type": "ed25519"}, "/Webhook/signature/header_format", "for hmac-sha256 signatures"),
        ({"type": "hmac-sha1"}, "/Webhook/signature/header_format", "not hmac-sha1"),
        ({"prefix": "v1="}, "/Webhook/signature/prefix", "has no prefix"),
        ({"encoding": "base64"}, "/Webhook/signature/encoding", "has no encoding"),
        ({"payload": "body"}, "/Webhook/signature/payload", "has no payload"),
        ({"timestamp_header": "X-T"}, "/Webhook/signature/timestamp_header", "has no"),
        ({"separator": "|"}, "/Webhook/signature/separator", "has no separator"),
        ({"header": None}, "/Webhook/signature", "needs the header"),
    ],
)
def test_a_wrong_stripe_block_is_reported_at_its_pointer(
    changes: dict[str, Any], pointer: str, message: str
) -> None:
    block = {k: v for k, v in {**BLOCK, **changes}.items() if v is not None}
    problems = validate_spec(spec_with(block))
    assert any(p.pointer == pointer and message in p.message for p in problems), problems
