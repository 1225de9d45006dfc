"""The engine's one HTTP door: timeouts, retries, size cap, redirects, redaction, SSRF guard,
streaming uploads and the delivery log, against a real server on 127.0.0.1."""

from __future__ import annotations

import email.utils
import hashlib
import json
import os
import random
import socket
import time
import tracemalloc
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import requests.auth
from hypothesis import assume, given
from hypothesis import strategies as st

from integrations.engine.errors import IntegrationError
from integrations.engine.http import AttemptRecord, HttpSession, redact
from tests.integrations.engine.conftest import LocalServer, Received, Reply


@dataclass
class Part:
    """Stands in for the engine's MultipartPart."""

    name: str
    value: Any = None
    file: str | None = None
    filename: str | None = None
    content_type: str | None = None


@dataclass
class Req:
    """Stands in for the engine's RenderedRequest."""

    http_method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    query: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "application/json"
    json_body: Any | None = None
    form: list[tuple[str, str]] | None = None
    multipart: list[Part] | None = None
    timeout: float | None = None
    success_codes: list[int] | None = None
    retry_safe: bool = False
    redact: set[str] = field(default_factory=set)


class Sleeps(list):
    """A `sleep` that records instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def session(**kwargs: Any) -> HttpSession:
    kwargs.setdefault("allow_private_networks", True)
    kwargs.setdefault("sleep", Sleeps())
    return HttpSession(**kwargs)


def test_get_returns_status_headers_json_and_sends_user_agent(local_server: LocalServer) -> None:
    local_server.route("GET", "/contacts", Reply(200, {"data": [{"id": "7"}]}, {"X-Total": "1"}))
    response = session(user_agent="Patchbay/test").send(
        Req("GET", local_server.url("/contacts"), query=[("phone", "+15551234567")]),
        method_name="FindContact",
    )
    assert response.status == 200
    assert response.json() == {"data": [{"id": "7"}]}
    assert response.headers["x-total"] == "1"
    assert response.attempts == 1
    received = local_server.requests_to("/contacts")[0]
    assert received.query == {"phone": ["+15551234567"]}
    assert received.headers["User-Agent"] == "Patchbay/test"


@pytest.mark.parametrize("body", [b"", b"   ", b"<html>oops</html>"])
def test_json_is_none_for_empty_or_non_json_body(local_server: LocalServer, body: bytes) -> None:
    local_server.route("GET", "/x", Reply(200, body))
    assert session().send(Req("GET", local_server.url("/x")), method_name="M").json() is None


def test_text_body_is_sent_with_its_content_type(local_server: LocalServer) -> None:
    local_server.route("POST", "/raw", Reply(200))
    request = Req("POST", local_server.url("/raw"), content_type="text/xml")
    request.text_body = "<a>é</a>"  # type: ignore[attr-defined]
    session().send(request, method_name="M")
    received = local_server.requests_to("/raw")[0]
    assert received.body == "<a>é</a>".encode()
    assert received.headers["Content-Type"] == "text/xml"


def test_json_form_and_headers_are_sent(local_server: LocalServer) -> None:
    local_server.route("*", "/echo", Reply(201, {"ok": True}))
    http = session()
    http.send(
        Req("POST", local_server.url("/echo"), json_body={"a": 1, "b": "é"}, headers={"X-A": "1"}),
        method_name="CreateContact",
    )
    http.send(
        Req(
            "POST",
            local_server.url("/echo"),
            content_type="application/x-www-form-urlencoded",
            form=[("to", "+1 555"), ("to", "+2"), ("body", "a&b")],
        ),
        method_name="SendMessage",
    )
    first, second = local_server.requests_to("/echo")
    assert first.json() == {"a": 1, "b": "é"}
    assert first.headers["Content-Type"] == "application/json"
    assert first.headers["X-A"] == "1"
    assert second.form() == {"to": ["+1 555", "+2"], "body": ["a&b"]}
    assert second.headers["Content-Type"] == "application/x-www-form-urlencoded"


# -- timeouts ---------------------------------------------------------------------------------


def test_slow_server_times_out_with_an_actionable_message(local_server: LocalServer) -> None:
    local_server.route("GET", "/slow", Reply(200, {}, delay=1.0))
    started = time.monotonic()
    with pytest.raises(IntegrationError) as caught:
        session(max_attempts=1).send(
            Req("GET", local_server.url("/slow"), timeout=0.2), method_name="FindContact"
        )
    assert time.monotonic() - started < 0.9
    error = caught.value
    assert error.permanent is False
    assert "did not answer within 0.2 s" in error.message
    assert error.method == "FindContact"


def test_timed_out_get_is_retried(local_server: LocalServer) -> None:
    local_server.sequence("GET", "/slow", [Reply(200, {}, delay=1.0), Reply(200, {"ok": 1})])
    response = session(max_attempts=2).send(
        Req("GET", local_server.url("/slow"), timeout=0.2), method_name="M"
    )
    assert response.json() == {"ok": 1}
    assert response.attempts == 2


def test_default_timeout_applies_when_request_sets_none(local_server: LocalServer) -> None:
    local_server.route("GET", "/slow", Reply(200, {}, delay=1.0))
    with pytest.raises(IntegrationError, match=r"within 0\.2 s"):
        session(max_attempts=1, default_timeout=0.2).send(
            Req("GET", local_server.url("/slow")), method_name="M"
        )


# -- retries ----------------------------------------------------------------------------------


def test_get_retried_after_two_500s_then_succeeds(local_server: LocalServer) -> None:
    local_server.sequence("GET", "/flaky", [Reply(500), Reply(502), Reply(200, {"ok": True})])
    sleeps = Sleeps()
    records: list[AttemptRecord] = []
    response = session(sleep=sleeps, on_attempt=records.append, backoff_base=0.5).send(
        Req("GET", local_server.url("/flaky")), method_name="Users"
    )
    assert response.json() == {"ok": True}
    assert response.attempts == 3
    assert local_server.hits["/flaky"] == 3
    assert len(sleeps) == 2
    # Full jitter: each wait is within [0, base * 2**(n-1)].
    assert 0 <= sleeps[0] <= 0.5 and 0 <= sleeps[1] <= 1.0
    assert [r.status for r in records] == [500, 502, 200]
    assert [r.attempt for r in records] == [1, 2, 3]
    assert records[0].error and records[0].error.startswith("500 from 127.0.0.1")
    assert records[2].error is None


class _TopOfRange(random.Random):
    """A random source whose jitter always lands on the top of the range it is given."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_backoff_waits_double_up_to_the_maximum(local_server: LocalServer) -> None:
    local_server.route("GET", "/down", Reply(503))
    sleeps = Sleeps()
    http = session(sleep=sleeps, max_attempts=5, backoff_base=0.5, backoff_max=1.5)
    # With every jitter draw at the top of its range, the waits are the caps themselves:
    # base * 2**(n-1), then backoff_max.
    http._random = _TopOfRange()
    with pytest.raises(IntegrationError):
        http.send(Req("GET", local_server.url("/down")), method_name="Users")
    assert sleeps == [0.5, 1.0, 1.5, 1.5]


def test_backoff_jitter_is_drawn_from_the_whole_range(local_server: LocalServer) -> None:
    local_server.route("GET", "/down", Reply(503))
    sleeps = Sleeps()
    http = session(sleep=sleeps, max_attempts=4, backoff_base=0.5)
    http._random.seed(1234)
    with pytest.raises(IntegrationError):
        http.send(Req("GET", local_server.url("/down")), method_name="Users")
    expected = random.Random(1234)
    assert sleeps == [expected.uniform(0, 0.5), expected.uniform(0, 1.0), expected.uniform(0, 2.0)]
    assert len(set(sleeps)) == 3 and all(wait > 0 for wait in sleeps)


def test_gives_up_after_max_attempts_with_transient_error(local_server: LocalServer) -> None:
    local_server.route("PUT", "/down", Reply(503, {"message": "maintenance"}))
    with pytest.raises(IntegrationError) as caught:
        session(max_attempts=3).send(
            Req("PUT", local_server.url("/down"), json_body={}), method_name="UpdateActivity"
        )
    assert local_server.hits["/down"] == 3
    error = caught.value
    assert error.status == 503
    assert error.permanent is False
    assert "503 from 127.0.0.1" in error.message and "(UpdateActivity)" in error.message
    assert "gave up after 3 attempts" in error.message


def test_post_is_not_retried_on_500_unless_retry_safe(local_server: LocalServer) -> None:
    local_server.route("POST", "/create", Reply(500))
    with pytest.raises(IntegrationError):
        session().send(Req("POST", local_server.url("/create"), json_body={}), method_name="C")
    assert local_server.hits["/create"] == 1

    local_server.sequence("POST", "/safe", [Reply(500), Reply(200, {"id": 1})])
    response = session().send(
        Req("POST", local_server.url("/safe"), json_body={}, retry_safe=True), method_name="C"
    )
    assert response.attempts == 2
    assert local_server.hits["/safe"] == 2


def test_post_is_not_retried_on_read_timeout(local_server: LocalServer) -> None:
    local_server.route("POST", "/slow", Reply(200, {}, delay=0.6))
    with pytest.raises(IntegrationError, match="did not answer"):
        session().send(
            Req("POST", local_server.url("/slow"), json_body={}, timeout=0.2), method_name="C"
        )
    assert local_server.hits["/slow"] == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_4xx_is_not_retried_and_is_permanent(local_server: LocalServer, status: int) -> None:
    local_server.route("GET", "/x", Reply(status, {"message": "nope"}))
    sleeps = Sleeps()
    with pytest.raises(IntegrationError) as caught:
        session(sleep=sleeps).send(Req("GET", local_server.url("/x")), method_name="FindContact")
    assert local_server.hits["/x"] == 1
    assert sleeps == []
    assert caught.value.status == status
    assert caught.value.permanent is True


def test_401_message_says_to_reconnect(local_server: LocalServer) -> None:
    local_server.route("GET", "/x", Reply(401))
    with pytest.raises(IntegrationError) as caught:
        session().send(Req("GET", local_server.url("/x")), method_name="FindContact")
    assert caught.value.message == (
        f"401 from 127.0.0.1:{local_server.port} (FindContact): credentials rejected — "
        "reconnect the integration"
    )


def test_429_retry_after_seconds_is_honoured_for_post(local_server: LocalServer) -> None:
    local_server.sequence(
        "POST", "/sms", [Reply(429, headers={"Retry-After": "2"}), Reply(200, {"id": "m1"})]
    )
    sleeps = Sleeps()
    response = session(sleep=sleeps).send(
        Req("POST", local_server.url("/sms"), json_body={"to": "+1"}), method_name="SendMessage"
    )
    assert response.json() == {"id": "m1"}
    assert local_server.hits["/sms"] == 2
    assert sleeps and sleeps[0] >= 2


def test_429_retry_after_http_date_is_honoured(local_server: LocalServer) -> None:
    when = email.utils.formatdate(time.time() + 5, usegmt=True)
    local_server.sequence("GET", "/x", [Reply(429, headers={"Retry-After": when}), Reply(200)])
    sleeps = Sleeps()
    session(sleep=sleeps).send(Req("GET", local_server.url("/x")), method_name="M")
    assert 3 <= sleeps[0] <= 6


def test_429_longer_than_backoff_max_is_raised_for_the_task(local_server: LocalServer) -> None:
    local_server.route("GET", "/x", Reply(429, headers={"Retry-After": "120"}))
    sleeps = Sleeps()
    with pytest.raises(IntegrationError) as caught:
        session(sleep=sleeps, backoff_max=30).send(
            Req("GET", local_server.url("/x")), method_name="Contacts"
        )
    assert sleeps == []
    assert local_server.hits["/x"] == 1
    error = caught.value
    assert error.status == 429 and error.permanent is False and error.retry_after == 120
    assert "429 from 127.0.0.1" in error.message
    assert "rate limited, retry in 120 s" in error.message


def test_429_on_every_attempt_ends_with_retry_after(local_server: LocalServer) -> None:
    local_server.route("GET", "/x", Reply(429, headers={"Retry-After": "1"}))
    with pytest.raises(IntegrationError) as caught:
        session(max_attempts=2).send(Req("GET", local_server.url("/x")), method_name="M")
    assert local_server.hits["/x"] == 2
    assert caught.value.retry_after == 1 and caught.value.permanent is False


def test_success_codes_override_2xx(local_server: LocalServer) -> None:
    local_server.route("GET", "/a", Reply(404, {"none": True}))
    local_server.route("GET", "/b", Reply(202))
    http = session()
    assert http.send(Req("GET", local_server.url("/a"), success_codes=[404]), method_name="M")
    with pytest.raises(IntegrationError):
        http.send(Req("GET", local_server.url("/b"), success_codes=[200]), method_name="M")


def test_connection_refused_is_transient_and_retried_even_for_post() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    sleeps = Sleeps()
    with pytest.raises(IntegrationError) as caught:
        session(sleep=sleeps, max_attempts=2).send(
            Req("POST", f"http://127.0.0.1:{port}/x", json_body={}), method_name="SendMessage"
        )
    assert caught.value.message.startswith(
        f"Could not connect to 127.0.0.1:{port}: connection refused"
    )
    assert caught.value.permanent is False
    # Nothing was sent, so a POST may be retried.
    assert len(sleeps) == 1


# -- response size, redirects -------------------------------------------------------------------


def test_response_larger_than_cap_is_refused(local_server: LocalServer) -> None:
    local_server.route("GET", "/big", Reply(200, b"x" * 5000))
    with pytest.raises(IntegrationError) as caught:
        session(max_response_bytes=1000).send(
            Req("GET", local_server.url("/big")), method_name="Contacts"
        )
    assert "larger than 1000 bytes" in caught.value.message
    assert caught.value.permanent is True


def test_response_without_length_is_cut_off_while_streaming(local_server: LocalServer) -> None:
    local_server.route("GET", "/big", Reply(200, b"x" * 300_000, send_length=False))
    with pytest.raises(IntegrationError, match="larger than 100000 bytes"):
        session(max_response_bytes=100_000).send(
            Req("GET", local_server.url("/big")), method_name="Contacts"
        )
    local_server.route("GET", "/ok", Reply(200, b"y" * 50_000, send_length=False))
    response = session(max_response_bytes=100_000).send(
        Req("GET", local_server.url("/ok")), method_name="Contacts"
    )
    assert len(response.content) == 50_000


def test_redirect_is_not_followed(local_server: LocalServer) -> None:
    # Following it would connect to the metadata address: the network guard would fail the test.
    local_server.route(
        "GET", "/moved", Reply(302, headers={"Location": "http://169.254.169.254/latest/"})
    )
    local_server.route("GET", "/here", Reply(301, headers={"Location": "/there"}))
    with pytest.raises(IntegrationError) as caught:
        session().send(Req("GET", local_server.url("/moved")), method_name="FindContact")
    assert "redirected to http://169.254.169.254/latest/" in caught.value.message
    assert "redirects are not followed" in caught.value.message
    assert caught.value.status == 302
    with pytest.raises(IntegrationError):
        session().send(Req("GET", local_server.url("/here")), method_name="FindContact")
    assert local_server.hits["/there"] == 0
    # A spec that expects the redirect can accept it.
    ok = session().send(
        Req("GET", local_server.url("/here"), success_codes=[301]), method_name="FindContact"
    )
    assert ok.status == 301 and ok.headers["Location"] == "/there"


# -- redaction ----------------------------------------------------------------------------------

SECRET = "s3cr3t/+ ké&y"


def _all_text(error: IntegrationError, records: list[AttemptRecord]) -> str:
    parts = [error.message, str(error), error.url or "", error.response_body or ""]
    for record in records:
        parts += [str(v) for v in vars(record).values()]
    return "\n".join(parts)


def _forms_of(secret: str) -> list[str]:
    return [
        secret,
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret),
        urllib.parse.quote(secret).lower(),
    ]


def test_secret_is_redacted_from_errors_and_attempt_records(local_server: LocalServer) -> None:
    def echo(request: Received) -> Reply:
        # A careless API that echoes what it got, secrets included.
        return Reply(400, {"error": "bad", "got": request.body.decode(), "q": request.query})

    local_server.route("POST", f"/hook/{urllib.parse.quote(SECRET, safe='')}", echo)
    records: list[AttemptRecord] = []
    with pytest.raises(IntegrationError) as caught:
        session(on_attempt=records.append).send(
            Req(
                "POST",
                local_server.url(f"/hook/{urllib.parse.quote(SECRET, safe='')}"),
                query=[("api_key", SECRET), ("other", "visible")],
                json_body={"key": SECRET, "note": f"prefix {SECRET} suffix", "password": "pw1"},
                redact={SECRET},
            ),
            method_name="CreateActivity",
        )
    text = _all_text(caught.value, records)
    for form in _forms_of(SECRET):
        assert form not in text
    # A well-known secret key is redacted from the logged body even if not declared.
    assert "pw1" not in str(records[0].request_body_redacted)
    assert "[redacted]" in (caught.value.url or "")
    assert "other=visible" in (caught.value.url or "")
    assert records[0].request_body_redacted and "prefix [redacted] suffix" in (
        records[0].request_body_redacted
    )
    assert records[0].response_body_excerpt and "bad" in records[0].response_body_excerpt


def test_secret_in_form_body_is_redacted_in_records(local_server: LocalServer) -> None:
    local_server.route("POST", "/form", Reply(200, {"access_token": "fresh-token-123"}))
    records: list[AttemptRecord] = []
    session(on_attempt=records.append).send(
        Req(
            "POST",
            local_server.url("/form"),
            form=[("user", "bob"), ("secret_value", SECRET)],
            redact={SECRET},
        ),
        method_name="Token",
    )
    record = records[0]
    assert record.request_body_redacted and "user=bob" in record.request_body_redacted
    for form in _forms_of(SECRET):
        assert form not in str(record)
    # Tokens in a response are redacted by key even though nobody knew them in advance.
    assert "fresh-token-123" not in str(record.response_body_excerpt)


class _HeaderAuth(requests.auth.AuthBase):
    """A requests auth hook that sets one header as given (like an authenticator does)."""

    def __init__(self, name: str, value: str) -> None:
        self.name, self.value = name, value

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers[self.name] = self.value
        return request


def test_a_header_http_refuses_is_a_permanent_redacted_error(local_server: LocalServer) -> None:
    local_server.route("GET", "/me", Reply(200))
    records: list[AttemptRecord] = []
    with pytest.raises(IntegrationError) as caught:
        session(on_attempt=records.append).send(
            Req("GET", local_server.url("/me"), redact={"s3cret"}),
            method_name="Users",
            auth=_HeaderAuth("Authorization", "Bearer s3cret\r\nX-Evil: 1"),
        )
    assert caught.value.permanent and caught.value.method == "Users"
    assert "line break" in caught.value.message
    assert "s3cret" not in _all_text(caught.value, records)
    assert local_server.hits["/me"] == 0 and len(records) == 1


def test_redact_replaces_raw_and_encoded_forms() -> None:
    secret = "a b/c&d"
    text = (
        f"raw={secret} q={urllib.parse.quote_plus(secret)} "
        f"p={urllib.parse.quote(secret, safe='')} lower={urllib.parse.quote(secret).lower()}"
    )
    assert redact(text, {secret}) == ("raw=[redacted] q=[redacted] p=[redacted] lower=[redacted]")
    assert redact("nothing here", {"", None}) == "nothing here"  # type: ignore[arg-type]


@given(st.text(min_size=1, max_size=40))
def test_redact_hides_any_secret_in_every_encoding(secret: str) -> None:
    assume(not set(secret) & set("<>|"))
    text = "|".join(
        f"<{form}>"
        for form in (
            secret,
            urllib.parse.quote(secret, safe=""),
            urllib.parse.quote_plus(secret),
            json.dumps(secret)[1:-1],
        )
    )
    assert redact(text, {secret}) == "|".join(["<[redacted]>"] * 4)


def test_engine_rendered_request_is_accepted(local_server: LocalServer, tmp_path: Path) -> None:
    request_module = pytest.importorskip("integrations.engine.request")
    source = tmp_path / "v.txt"
    source.write_bytes(b"voice")
    local_server.route("POST", "/up", Reply(200, {"ok": True}))
    rendered = request_module.RenderedRequest(
        http_method="POST",
        url=local_server.url("/up"),
        content_type="multipart/form-data",
        multipart=[
            request_module.MultipartPart(name="to", value="+15551234567"),
            request_module.MultipartPart(name="media", file=str(source), filename="v.txt"),
        ],
        redact={"+15551234567"},
    )
    records: list[AttemptRecord] = []
    response = session(on_attempt=records.append).send(rendered, method_name="SendFile")
    assert response.json() == {"ok": True}
    received = local_server.requests_to("/up")[0]
    assert _file_part(received.body, received.headers["Content-Type"])[1] == b"voice"
    assert "+15551234567" not in str(records)


# -- SSRF guard ---------------------------------------------------------------------------------

NOT_ALLOWED = (
    "private network addresses are not allowed (set OUTBOUND_ALLOW_PRIVATE_NETWORKS to allow)"
)


@pytest.mark.parametrize(
    ("host", "address"),
    [("127.1", "127.0.0.1"), ("2130706433", "127.0.0.1"), ("[::1]", "::1"), ("localhost", None)],
)
def test_loopback_spellings_are_refused(
    local_server: LocalServer, host: str, address: str | None
) -> None:
    with pytest.raises(IntegrationError) as caught:
        session(allow_private_networks=False).send(
            Req("GET", f"http://{host}:{local_server.port}/x"), method_name="FindContact"
        )
    assert caught.value.message.startswith("Refused to connect to ")
    if address:
        shown = address if host.strip("[]") == address else f"{host} ({address})"
        assert caught.value.message.startswith(f"Refused to connect to {shown}: ")
    assert NOT_ALLOWED in caught.value.message
    assert caught.value.permanent is True
    assert local_server.hits["/x"] == 0


@pytest.mark.parametrize(
    "address",
    ["10.0.0.1", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "[fd00::1]"],
)
def test_private_and_metadata_addresses_are_refused_without_connecting(address: str) -> None:
    # The suite's network guard fails the test if any connection to these is even attempted.
    sleeps = Sleeps()
    with pytest.raises(IntegrationError) as caught:
        HttpSession(sleep=sleeps).send(
            Req("GET", f"http://{address}/latest/meta-data/"), method_name="FindContact"
        )
    assert caught.value.message == f"Refused to connect to {address.strip('[]')}: {NOT_ALLOWED}"
    assert caught.value.permanent is True
    assert sleeps == []  # refusals are not retried


def test_hostname_resolving_to_private_address_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    looked_up: list[str] = []

    def fake_getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        looked_up.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", port or 443))]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    with pytest.raises(IntegrationError) as caught:
        HttpSession().send(
            Req("POST", "https://crm.example.com/api", json_body={}), method_name="CreateContact"
        )
    assert caught.value.message == (
        f"Refused to connect to crm.example.com (10.0.0.5): {NOT_ALLOWED}"
    )
    assert looked_up == ["crm.example.com"]


def test_unresolvable_host_is_a_transient_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_such_host(*args: Any, **kwargs: Any) -> list[Any]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    with pytest.raises(IntegrationError) as caught:
        HttpSession(max_attempts=1).send(
            Req("GET", "https://crm.invalid/api"), method_name="FindContact"
        )
    assert caught.value.message == "Could not resolve crm.invalid: check the host name"
    assert caught.value.permanent is False


def test_password_in_url_is_redacted(local_server: LocalServer) -> None:
    local_server.route("GET", "/x", Reply(500))
    records: list[AttemptRecord] = []
    with pytest.raises(IntegrationError) as caught:
        session(on_attempt=records.append, max_attempts=1).send(
            Req("GET", f"http://bob:hunter2@127.0.0.1:{local_server.port}/x"), method_name="M"
        )
    assert "hunter2" not in str(caught.value.url) + str(records)
    assert "bob:[redacted]@" in str(caught.value.url)


def test_redirect_to_private_address_in_file_url_is_refused(tmp_path: Path) -> None:
    # A recording URL is fetched through the same guard.
    with pytest.raises(IntegrationError, match=r"Refused to connect to 10\.1\.2\.3"):
        HttpSession().send(
            Req(
                "POST",
                "http://10.9.9.9/upload",
                content_type="multipart/form-data",
                multipart=[Part("file", file="http://10.1.2.3/rec.mp3")],
            ),
            method_name="UploadRecording",
        )


def test_loopback_allowed_when_private_networks_allowed(local_server: LocalServer) -> None:
    local_server.route("GET", "/x", Reply(200, {"ok": True}))
    response = HttpSession(allow_private_networks=True).send(
        Req("GET", local_server.url("/x")), method_name="M"
    )
    assert response.json() == {"ok": True}


def test_no_cookie_is_carried_between_requests(local_server: LocalServer) -> None:
    local_server.route("GET", "/login", Reply(200, headers={"Set-Cookie": "sid=tenant-a; Path=/"}))
    local_server.route("GET", "/other", Reply(200))
    http = session()
    http.send(Req("GET", local_server.url("/login")), method_name="M")
    http.send(Req("GET", local_server.url("/other")), method_name="M")
    assert "Cookie" not in local_server.requests_to("/other")[0].headers


# -- streaming multipart ----------------------------------------------------------------------


def _file_part(body: bytes, content_type: str) -> tuple[dict[str, str], bytes]:
    boundary = content_type.split("boundary=")[1].encode()
    sections = body.split(b"--" + boundary)
    for section in sections:
        if b"filename=" in section:
            head, _, data = section.partition(b"\r\n\r\n")
            headers = {}
            for line in head.strip().split(b"\r\n"):
                name, _, value = line.decode().partition(": ")
                headers[name] = value
            return headers, data[: -len(b"\r\n")]
    raise AssertionError("no file part")


def test_large_file_is_streamed_not_buffered(local_server: LocalServer, tmp_path: Path) -> None:
    size = 20 * 1024 * 1024
    source = tmp_path / "recording.wav"
    with source.open("wb") as handle:
        for _ in range(size // (1024 * 1024)):
            handle.write(os.urandom(1024 * 1024))
    expected = hashlib.sha256(source.read_bytes()).hexdigest()
    saved = tmp_path / "received.bin"
    local_server.save_body_to["/upload"] = saved
    local_server.route("POST", "/upload", Reply(200, {"id": "rec-1"}))
    records: list[AttemptRecord] = []

    tracemalloc.start()
    try:
        response = session(on_attempt=records.append).send(
            Req(
                "POST",
                local_server.url("/upload"),
                content_type="multipart/form-data",
                multipart=[
                    Part("call_id", "c-42"),
                    Part("meta", {"duration": 12}, content_type="application/json"),
                    Part("file", file=str(source), content_type="audio/wav"),
                ],
            ),
            method_name="UploadRecording",
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert response.json() == {"id": "rec-1"}
    assert peak < size / 10, f"peak {peak} bytes while sending a {size}-byte file"
    received = local_server.requests_to("/upload")[0]
    assert received.headers.get("Content-Length") == str(received.body_size)
    body = saved.read_bytes()
    headers, data = _file_part(body, received.headers["Content-Type"])
    assert len(data) == size
    assert hashlib.sha256(data).hexdigest() == expected
    assert 'filename="recording.wav"' in headers["Content-Disposition"]
    assert headers["Content-Type"] == "audio/wav"
    assert b'name="call_id"\r\n\r\nc-42\r\n' in body[:2000]
    assert b'{"duration": 12}' in body[:2000]
    assert "file=<file recording.wav, audio/wav, 20971520 bytes>" in str(
        records[0].request_body_redacted
    )


def test_file_from_url_is_fetched_through_the_session_and_streamed(
    local_server: LocalServer,
) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 17)
    local_server.route(
        "GET", "/files/voicemail.mp3", Reply(200, payload, {"Content-Type": "audio/mpeg"})
    )
    local_server.route("POST", "/upload", Reply(201, {"ok": True}))
    session().send(
        Req(
            "POST",
            local_server.url("/upload"),
            content_type="multipart/form-data",
            multipart=[Part("file", file=local_server.url("/files/voicemail.mp3"))],
        ),
        method_name="UploadRecording",
    )
    received = local_server.requests_to("/upload")[0]
    headers, data = _file_part(received.body, received.headers["Content-Type"])
    assert data == payload
    assert headers["Content-Type"] == "audio/mpeg"
    assert 'filename="voicemail.mp3"' in headers["Content-Disposition"]
    assert received.headers.get("Content-Length") == str(received.body_size)


def test_file_url_without_length_is_sent_chunked(local_server: LocalServer) -> None:
    payload = os.urandom(200_000)
    local_server.route("GET", "/rec", Reply(200, payload, send_length=False))
    local_server.route("POST", "/upload", Reply(200))
    session().send(
        Req(
            "POST",
            local_server.url("/upload"),
            multipart=[Part("file", file=local_server.url("/rec"), filename="r.mp3")],
        ),
        method_name="UploadRecording",
    )
    received = local_server.requests_to("/upload")[0]
    assert received.headers.get("Transfer-Encoding") == "chunked"
    assert _file_part(received.body, received.headers["Content-Type"])[1] == payload


def test_missing_file_is_a_permanent_error(local_server: LocalServer, tmp_path: Path) -> None:
    with pytest.raises(IntegrationError, match=r"not readable: nope\.wav") as caught:
        session().send(
            Req(
                "POST",
                local_server.url("/upload"),
                multipart=[Part("f", file=str(tmp_path / "nope.wav"))],
            ),
            method_name="UploadRecording",
        )
    assert caught.value.permanent is True
    assert local_server.hits["/upload"] == 0


def test_multipart_retry_resends_the_whole_file(local_server: LocalServer, tmp_path: Path) -> None:
    source = tmp_path / "a.bin"
    source.write_bytes(b"abc" * 1000)
    local_server.sequence("PUT", "/upload", [Reply(503), Reply(200)])
    session().send(
        Req("PUT", local_server.url("/upload"), multipart=[Part("f", file=str(source))]),
        method_name="UploadRecording",
    )
    first, second = local_server.requests_to("/upload")
    assert first.body_size == second.body_size
    assert _file_part(second.body, second.headers["Content-Type"])[1] == b"abc" * 1000


def test_error_codes_in_a_response_body_stay_readable_while_tokens_are_redacted():
    from integrations.engine.http import _body_excerpt

    body = (
        b'{"error": {"code": "validation_error", "message": "phone is required"},'
        b' "access_token": "fresh-token-value"}'
    )
    excerpt = _body_excerpt(body, secrets=[])

    assert "validation_error" in excerpt
    assert "fresh-token-value" not in excerpt
