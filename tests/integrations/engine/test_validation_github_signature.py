"""HMAC-SHA256 over the body, checked against GitHub's published test vector.

https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries#testing-the-webhook-payload-validation
gives secret "It's a Secret to Everybody", payload "Hello, World!" and the header
`X-Hub-Signature-256: sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17`.
The digest below is copied from that page, not computed here, so a wrong HMAC (key and message
swapped, a wrong hash, the header prefix signed along) fails the test.
"""

from __future__ import annotations

from typing import Any

import pytest

from integrations.engine.signatures import SignatureInvalid
from integrations.engine.spec import Spec, load_spec
from integrations.engine.webhooks import WebhookMatch, match_webhook

GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_PAYLOAD = b"Hello, World!"
GITHUB_HEADER = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def github_spec() -> Spec:
    """An sms spec whose webhook is signed the way GitHub signs deliveries."""
    return load_spec(
        {
            "id": "github-style",
            "name": "GitHub-style signed webhook",
            "class": "sms",
            "properties": [{"name": "Webhook Secret", "type": "secret", "required": True}],
            "API": {
                "SendMessage": {
                    "request_method": "POST",
                    "request_url": "https://sms.example/send",
                    "request_parameters": {"to": "$to$", "text": "$content$"},
                }
            },
            "Webhook": {
                "signature": {
                    "type": "hmac-sha256",
                    "header": "X-Hub-Signature-256",
                    "secret": "$Webhook Secret$",
                    "payload": "body",
                    "encoding": "hex",
                    "prefix": "sha256=",
                },
                "models": [{"event_key": "ping", "request_body": "$content$"}],
            },
        }
    )


def deliver(body: bytes, headers: dict[str, str], secret: str = GITHUB_SECRET) -> Any:
    return match_webhook(
        github_spec(),
        method="POST",
        content_type="text/plain",
        body=body,
        query={},
        headers=headers,
        properties={"Webhook Secret": secret},
    )


def test_githubs_published_vector_is_accepted() -> None:
    match = deliver(GITHUB_PAYLOAD, {"X-Hub-Signature-256": GITHUB_HEADER})
    assert isinstance(match, WebhookMatch)
    assert match.values["content"] == "Hello, World!"


def test_the_header_name_is_matched_case_insensitively() -> None:
    assert deliver(GITHUB_PAYLOAD, {"x-hub-signature-256": GITHUB_HEADER}) is not None


@pytest.mark.parametrize(
    ("body", "headers", "secret", "fragment"),
    [
        (b"Hello, World?", {"X-Hub-Signature-256": GITHUB_HEADER}, GITHUB_SECRET, "not match"),
        (GITHUB_PAYLOAD, {"X-Hub-Signature-256": GITHUB_HEADER}, "another secret", "not match"),
        (GITHUB_PAYLOAD, {"X-Hub-Signature-256": GITHUB_HEADER[7:]}, GITHUB_SECRET, "sha256="),
        (GITHUB_PAYLOAD, {}, GITHUB_SECRET, "missing X-Hub-Signature-256"),
    ],
    ids=["changed-body", "wrong-secret", "no-prefix", "unsigned"],
)
def test_anything_else_is_refused_with_401(
    body: bytes, headers: dict[str, str], secret: str, fragment: str
) -> None:
    with pytest.raises(SignatureInvalid) as caught:
        deliver(body, headers, secret)
    assert caught.value.status == 401
    assert fragment in caught.value.message
    assert GITHUB_SECRET not in caught.value.message
