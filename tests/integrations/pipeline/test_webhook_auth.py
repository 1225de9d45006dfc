"""PBX webhooks are authenticated by the organization's secret before anything is parsed or
stored: Basic auth, a secret header, a bearer token, or a Standard Webhooks signature."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from standardwebhooks import Webhook

from integrations.models import InboxEvent
from tests.factories import OrganizationFactory
from tests.integrations.pipeline.conftest import (
    SECRET,
    basic,
    hook_url,
    post_hook,
    signed_headers,
)

pytestmark = pytest.mark.django_db

CALL = {
    "call_id": "c-100",
    "direction": "inbound",
    "status": "ringing",
    "caller_number": "(415) 555-0100",
    "called_number": "+18185559876",
}
BODY = json.dumps(CALL).encode()


def _library_headers(secret: str | bytes, body: bytes, msg_id: str = "msg_lib_1") -> dict:
    """Headers signed by the reference `standardwebhooks` library."""
    from datetime import UTC, datetime

    now = datetime.now(tz=UTC)
    signature = Webhook(secret).sign(msg_id, now, body.decode())
    return {
        "HTTP_WEBHOOK_ID": msg_id,
        "HTTP_WEBHOOK_TIMESTAMP": str(int(now.timestamp())),
        "HTTP_WEBHOOK_SIGNATURE": signature,
    }


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(basic(SECRET), id="basic-any-username"),
        pytest.param(basic(SECRET, username=""), id="basic-empty-username"),
        pytest.param({"HTTP_X_PATCHBAY_SECRET": SECRET}, id="secret-header"),
        pytest.param({"HTTP_AUTHORIZATION": f"Bearer {SECRET}"}, id="bearer"),
        pytest.param(lambda: signed_headers(SECRET, BODY), id="standard-webhooks"),
        pytest.param(
            lambda: _library_headers(SECRET.encode(), BODY), id="standardwebhooks-library"
        ),
    ],
)
def test_each_authentication_method_is_accepted(client: Any, org: Any, headers: Any) -> None:
    response = post_hook(
        client, org, "call", BODY, headers=headers() if callable(headers) else headers
    )

    assert response.status_code == 202, response.content
    assert response.json()["status"] == "accepted"
    assert InboxEvent.objects.filter(organization=org).count() == 1


# Built at test time (signatures carry the current time).
BAD_CREDENTIALS = {
    "missing": lambda: {},
    "basic-wrong": lambda: basic("wrong-secret"),
    "header-wrong": lambda: {"HTTP_X_PATCHBAY_SECRET": "wrong"},
    "bearer-wrong": lambda: {"HTTP_AUTHORIZATION": "Bearer wrong"},
    "basic-garbage": lambda: {"HTTP_AUTHORIZATION": "Basic !!!not-base64"},
    "signature-wrong-key": lambda: signed_headers("another-secret", BODY),
    "signature-other-body": lambda: signed_headers(SECRET, BODY + b" "),
    "signature-stale": lambda: signed_headers(SECRET, BODY, timestamp=int(time.time()) - 305),
    "signature-future": lambda: signed_headers(SECRET, BODY, timestamp=int(time.time()) + 305),
    "signature-bad-timestamp": lambda: {
        **signed_headers(SECRET, BODY),
        "HTTP_WEBHOOK_TIMESTAMP": "yesterday",
    },
    "signature-unknown-version": lambda: {
        **signed_headers(SECRET, BODY),
        "HTTP_WEBHOOK_SIGNATURE": "v2,abc",
    },
    "valid-signature-wrong-basic": lambda: {**signed_headers(SECRET, BODY), **basic("wrong")},
}


@pytest.mark.parametrize("case", BAD_CREDENTIALS)
def test_wrong_or_missing_credentials_are_401_and_nothing_is_stored(
    client: Any, org: Any, case: str
) -> None:
    response = post_hook(client, org, "call", BODY, headers=BAD_CREDENTIALS[case]())

    assert response.status_code == 401
    body = response.json()
    assert body["message"] and body["errors"] == {}
    assert response["WWW-Authenticate"].startswith("Basic")
    assert not InboxEvent.objects.exists()


def test_an_unknown_org_key_is_401_nothing_stored(client: Any, org: Any) -> None:
    response = client.post(
        "/api/v1/hooks/pbx/no-such-key/call", BODY, content_type="application/json", **basic(SECRET)
    )

    assert response.status_code == 401
    assert not InboxEvent.objects.exists()


def test_another_orgs_secret_is_refused(client: Any, org: Any) -> None:
    other = OrganizationFactory(webhook_secret="the-other-orgs-secret")

    response = post_hook(client, org, "call", BODY, headers=basic(other.webhook_secret))

    assert response.status_code == 401
    assert not InboxEvent.objects.exists()


def test_two_signatures_during_rotation_one_valid_is_accepted(client: Any, org: Any) -> None:
    headers = signed_headers(["the-retired-secret", SECRET], BODY)
    assert len(headers["HTTP_WEBHOOK_SIGNATURE"].split()) == 2

    response = post_hook(client, org, "call", BODY, headers=headers)

    assert response.status_code == 202


def test_a_whsec_secret_is_used_as_its_decoded_key(client: Any) -> None:
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    org = OrganizationFactory(webhook_secret=secret)

    response = post_hook(client, org, "call", BODY, headers=_library_headers(secret, BODY))

    assert response.status_code == 202


def test_credentials_are_never_stored(client: Any, org: Any) -> None:
    query = f"token={SECRET}&id=1"
    response = post_hook(
        client,
        org,
        "call",
        json.dumps({**CALL, "note": f"secret is {SECRET}", "nested": [{"s": SECRET}]}),
        headers={**basic(SECRET), "HTTP_X_PATCHBAY_SECRET": SECRET},
        query=query,
    )

    assert response.status_code == 202
    event = InboxEvent.objects.get()
    stored = json.dumps([event.body, event.headers, event.query, event.payload, event.normalized])
    assert SECRET not in stored
    assert base64.b64encode(f"ringrx:{SECRET}".encode()).decode() not in stored
    assert event.headers["Authorization"] == "[redacted]"
    assert event.headers["X-Patchbay-Secret"] == "[redacted]"


def test_only_post_is_allowed(client: Any, org: Any) -> None:
    assert client.get(hook_url(org, "call"), **basic(SECRET)).status_code == 405
