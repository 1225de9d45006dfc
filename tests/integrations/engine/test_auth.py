"""Authentication of outbound requests: basic, bearer, OAuth 2.0 (authorization code, refresh
before expiry and after a 401, concurrent refreshes collapsing into one) and token exchange
(RingRx), against small providers on 127.0.0.1."""

from __future__ import annotations

import base64
import re
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from integrations.engine.auth import (
    InMemoryTokenStore,
    OAuth2Authenticator,
    ThreadingRefreshLock,
    TokenExchangeAuthenticator,
    TokenSet,
    authenticator_for,
    send_with_auth,
)
from integrations.engine.errors import IntegrationError, SpecError
from integrations.engine.http import AttemptRecord, HttpSession, OutboundRequest
from tests.integrations.engine.conftest import LocalServer, Received, Reply


@dataclass
class Req:
    """Stands in for the engine's RenderedRequest."""

    http_method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    query: list[tuple[str, str]] = field(default_factory=list)
    content_type: str | None = None
    json_body: Any | None = None
    form: list[tuple[str, str]] | None = None
    multipart: list[Any] | None = None
    timeout: float | None = None
    success_codes: list[int] | None = None
    retry_safe: bool = False
    redact: set[str] = field(default_factory=set)


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def http_session(**kwargs: Any) -> HttpSession:
    return HttpSession(allow_private_networks=True, sleep=lambda _s: None, **kwargs)


def render_with(values: Mapping[str, Any]) -> Any:
    """A stand-in for the engine's templating: `$name$` replaced from `values`."""

    def render(template: Any) -> Any:
        if isinstance(template, dict):
            return {k: render(v) for k, v in template.items()}
        if not isinstance(template, str):
            return template
        whole = re.fullmatch(r"\$([^$]+)\$", template)
        if whole:
            return values.get(whole.group(1))
        return re.sub(r"\$([^$]+)\$", lambda m: str(values.get(m.group(1), "")), template)

    return render


# -- static credentials ------------------------------------------------------------------------


def test_basic_sends_utf8_credentials(local_server: LocalServer) -> None:
    local_server.route("GET", "/me", Reply(200, {}))
    authenticator = authenticator_for(
        {"type": "basic", "username": "$User$", "password": "$Password$"},
        render=render_with({"User": "admin", "Password": "pässword"}),
    )
    send_with_auth(
        http_session(),
        Req("GET", local_server.url("/me")),
        method_name="Users",
        authenticator=authenticator,
    )
    sent = local_server.requests_to("/me")[0].headers["Authorization"]
    assert sent == "Basic " + base64.b64encode("admin:pässword".encode()).decode()
    assert "pässword" in authenticator.secrets()


@pytest.mark.parametrize(
    ("block", "header", "value"),
    [
        ({"type": "bearer", "token": "$API Key$"}, "Authorization", "Bearer k-123"),
        (
            {"type": "bearer", "token": "$API Key$", "header": "X-Api-Key", "scheme": "Token"},
            "X-Api-Key",
            "Token k-123",
        ),
        ({"type": "bearer", "token": "$API Key$", "scheme": ""}, "Authorization", "k-123"),
        (
            {"type": "bearer", "token": "token=$API Key$", "scheme": ""},
            "Authorization",
            "token=k-123",
        ),
    ],
)
def test_bearer_header_scheme_and_bare_token(
    local_server: LocalServer, block: dict[str, str], header: str, value: str
) -> None:
    local_server.route("GET", "/me", Reply(200))
    authenticator = authenticator_for(block, render=render_with({"API Key": "k-123"}))
    send_with_auth(
        http_session(),
        Req("GET", local_server.url("/me")),
        method_name="Users",
        authenticator=authenticator,
    )
    assert local_server.requests_to("/me")[0].headers[header] == value


@pytest.mark.parametrize("api_key", ["k-123\r\nX-Evil: 1", "k-123\r\n", "k-123\n"])
def test_a_pasted_key_with_a_line_break_is_refused_by_name_and_not_sent(
    local_server: LocalServer, api_key: str
) -> None:
    local_server.route("GET", "/me", Reply(200))
    records: list[AttemptRecord] = []
    authenticator = authenticator_for(
        {"type": "bearer", "token": "$API Key$"}, render=render_with({"API Key": api_key})
    )
    with pytest.raises(IntegrationError) as caught:
        send_with_auth(
            http_session(on_attempt=records.append),
            Req("GET", local_server.url("/me")),
            method_name="Users",
            authenticator=authenticator,
        )
    assert caught.value.message == (
        "The API Key contains a line break; paste it again without spaces or new lines"
    )
    assert caught.value.permanent and caught.value.auth_failed
    assert "k-123" not in repr(caught.value.args) and all("k-123" not in repr(r) for r in records)
    assert local_server.hits["/me"] == 0


def test_an_issued_access_token_with_a_line_break_is_refused(local_server: LocalServer) -> None:
    local_server.route("GET", "/me", Reply(200))
    store = InMemoryTokenStore(TokenSet(access_token="at-1\r\nX-Evil: 1", expires_at=None))
    authenticator = authenticator_for(
        {
            "type": "oauth2",
            "authorize_url": local_server.url("/oauth/auth"),
            "token_url": local_server.url("/oauth/token"),
            "client_id": "cid",
        },
        session=http_session(),
        store=store,
    )
    with pytest.raises(IntegrationError) as caught:
        send_with_auth(
            http_session(),
            Req("GET", local_server.url("/me")),
            method_name="Users",
            authenticator=authenticator,
        )
    assert caught.value.message == (
        "The access token the provider issued contains a line break; reconnect the integration"
    )
    assert local_server.hits["/me"] == 0


def test_none_adds_nothing_and_401_is_auth_failed(local_server: LocalServer) -> None:
    local_server.route("GET", "/me", Reply(401))
    authenticator = authenticator_for({"type": "none"})
    with pytest.raises(IntegrationError) as caught:
        send_with_auth(
            http_session(),
            Req("GET", local_server.url("/me")),
            method_name="Users",
            authenticator=authenticator,
        )
    assert "Authorization" not in local_server.requests_to("/me")[0].headers
    assert local_server.hits["/me"] == 1
    assert caught.value.auth_failed is True and caught.value.status == 401
    assert authenticator_for(None).kind == "none"


def test_spec_mistakes_are_spec_errors() -> None:
    with pytest.raises(SpecError, match="/authentication/username"):
        authenticator_for({"type": "basic", "password": "x"})
    with pytest.raises(SpecError, match="unknown authentication type 'kerberos'"):
        authenticator_for({"type": "kerberos"})
    with pytest.raises(SpecError, match="/authentication/request"):
        authenticator_for({"type": "token"}, run_method=lambda m, v: {})


# -- OAuth 2.0 ---------------------------------------------------------------------------------


class OAuthProvider:
    """A tiny OAuth 2.0 provider plus one protected API route (`/api/record`)."""

    def __init__(self, server: LocalServer, *, token_delay: float = 0.0) -> None:
        self.server = server
        self.lock = threading.Lock()
        self.serial = 0
        self.valid_access: set[str] = set()
        self.valid_refresh: set[str] = set()
        self.token_delay = token_delay
        self.refresh_down = False
        server.route("POST", "/oauth/token", self.token)
        server.route("GET", "/api/record", self.record)

    def issue(self) -> dict[str, Any]:
        with self.lock:
            self.serial += 1
            access, refresh = f"at-{self.serial}", f"rt-{self.serial}"
            self.valid_access.add(access)
            self.valid_refresh.add(refresh)
        return {
            "access_token": access,
            "refresh_token": refresh,
            "expires_in": 3600,
            "api_domain": self.server.url(""),
            "token_type": "Bearer",
        }

    def token(self, request: Received) -> Reply:
        form = {k: v[0] for k, v in request.form().items()}
        if form.get("client_id") != "cid" or form.get("client_secret") != "csecret":
            return Reply(401, {"error": "invalid_client"})
        if form["grant_type"] == "authorization_code":
            if form.get("code") != "good-code":
                # Zoho answers a bad code with 200 and an error.
                return Reply(200, {"error": "invalid_code"})
            return Reply(200, self.issue())
        if form["grant_type"] == "refresh_token":
            if self.refresh_down:
                return Reply(503, {"error": "temporarily_unavailable"})
            if form.get("refresh_token") not in self.valid_refresh:
                return Reply(400, {"error": "invalid_grant"}, delay=self.token_delay)
            issued = self.issue()
            del issued["refresh_token"]  # Zoho does not rotate refresh tokens
            return Reply(200, issued, delay=self.token_delay)
        return Reply(400, {"error": "unsupported_grant_type"})

    def record(self, request: Received) -> Reply:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Zoho-oauthtoken" or token not in self.valid_access:
            return Reply(401, {"code": "INVALID_TOKEN"})
        return Reply(200, {"id": "r1", "token": token})

    @property
    def token_hits(self) -> int:
        return self.server.hits["/oauth/token"]


def zoho_block(server: LocalServer) -> dict[str, Any]:
    return {
        "type": "oauth2",
        "authorize_url": "https://accounts.example.com/oauth/v2/auth?prompt=consent",
        "token_url": server.url("/oauth/token"),
        "client_id": "$Client ID$",
        "client_secret": "$Client Secret$",
        "scope": "ZohoCRM.modules.ALL,ZohoCRM.users.READ",
        "scheme": "Zoho-oauthtoken",
        "extra_authorize_params": {"access_type": "offline"},
        "token_response_map": {"api_domain": "$api_domain$"},
    }


def zoho(
    server: LocalServer,
    *,
    store: InMemoryTokenStore | None = None,
    clock: Clock | None = None,
    session: HttpSession | None = None,
) -> OAuth2Authenticator:
    authenticator = authenticator_for(
        zoho_block(server),
        render=render_with({"Client ID": "cid", "Client Secret": "csecret"}),
        session=session or http_session(),
        store=store if store is not None else InMemoryTokenStore(),
        lock=ThreadingRefreshLock(),
        clock=clock or Clock(),
    )
    assert isinstance(authenticator, OAuth2Authenticator)
    return authenticator


def test_authorization_url_has_state_redirect_scope_and_extra_params(
    local_server: LocalServer,
) -> None:
    url = zoho(local_server).authorization_url("st-123", "https://portal.example.com/oauth/cb")
    parts = urllib.parse.urlsplit(url)
    assert parts.netloc == "accounts.example.com" and parts.path == "/oauth/v2/auth"
    assert dict(urllib.parse.parse_qsl(parts.query)) == {
        "prompt": "consent",
        "response_type": "code",
        "client_id": "cid",
        "redirect_uri": "https://portal.example.com/oauth/cb",
        "scope": "ZohoCRM.modules.ALL,ZohoCRM.users.READ",
        "state": "st-123",
        "access_type": "offline",
    }


def test_code_exchange_saves_tokens_and_captures_token_response_values(
    local_server: LocalServer,
) -> None:
    provider = OAuthProvider(local_server)
    store = InMemoryTokenStore()
    clock = Clock()
    authenticator = zoho(local_server, store=store, clock=clock)
    tokens = authenticator.exchange_code("good-code", "https://portal.example.com/cb")
    assert tokens.access_token == "at-1" and tokens.refresh_token == "rt-1"
    assert tokens.expires_at == clock.now + 3600
    assert tokens.extra == {"api_domain": local_server.url("")}
    assert store.load() == tokens
    assert authenticator.values() == {"api_domain": local_server.url("")}
    form = local_server.requests_to("/oauth/token")[0].form()
    assert form["grant_type"] == ["authorization_code"]
    assert form["redirect_uri"] == ["https://portal.example.com/cb"]
    assert provider.token_hits == 1


def test_code_exchange_failure_is_auth_failed_and_logs_no_secret(
    local_server: LocalServer,
) -> None:
    OAuthProvider(local_server)
    records: list[AttemptRecord] = []
    authenticator = zoho(local_server, session=http_session(on_attempt=records.append))
    with pytest.raises(IntegrationError) as caught:
        authenticator.exchange_code("bad-code", "https://portal.example.com/cb")
    assert caught.value.auth_failed is True and caught.value.permanent is True
    assert "invalid_code" in caught.value.message
    assert "reconnect the integration" in caught.value.message
    assert "csecret" not in str(records) and "bad-code" not in str(records)


def test_token_is_refreshed_shortly_before_expiry(local_server: LocalServer) -> None:
    provider = OAuthProvider(local_server)
    clock = Clock()
    store = InMemoryTokenStore()
    authenticator = zoho(local_server, store=store, clock=clock)
    authenticator.exchange_code("good-code", "https://portal.example.com/cb")

    headers: dict[str, str] = {}
    authenticator.prepare(headers)
    assert headers == {"Authorization": "Zoho-oauthtoken at-1"}
    assert provider.token_hits == 1  # fresh: no refresh

    clock.now += 3600 - 30  # within the refresh skew
    authenticator.prepare(headers)
    assert headers == {"Authorization": "Zoho-oauthtoken at-2"}
    assert provider.token_hits == 2
    saved = store.load()
    assert saved is not None
    assert saved.refresh_token == "rt-1"  # not rotated: kept
    assert saved.extra == {"api_domain": local_server.url("")}
    form = local_server.requests_to("/oauth/token")[1].form()
    assert form["grant_type"] == ["refresh_token"] and form["refresh_token"] == ["rt-1"]


def test_401_refreshes_once_and_retries_once(local_server: LocalServer) -> None:
    provider = OAuthProvider(local_server)
    store = InMemoryTokenStore()
    authenticator = zoho(local_server, store=store)
    authenticator.exchange_code("good-code", "https://portal.example.com/cb")
    provider.valid_access.clear()  # the CRM revoked the access token early

    response = send_with_auth(
        http_session(),
        Req("GET", local_server.url("/api/record")),
        method_name="GetActivity",
        authenticator=authenticator,
    )
    assert response.json() == {"id": "r1", "token": "at-2"}
    assert local_server.hits["/api/record"] == 2
    assert provider.token_hits == 2  # the code exchange and one refresh


def test_401_again_after_refresh_is_auth_failed(local_server: LocalServer) -> None:
    provider = OAuthProvider(local_server)
    authenticator = zoho(local_server)
    authenticator.exchange_code("good-code", "https://portal.example.com/cb")
    local_server.route("GET", "/api/record", Reply(401))
    with pytest.raises(IntegrationError) as caught:
        send_with_auth(
            http_session(),
            Req("GET", local_server.url("/api/record")),
            method_name="GetActivity",
            authenticator=authenticator,
        )
    assert local_server.hits["/api/record"] == 2
    assert provider.token_hits == 2
    error = caught.value
    assert error.status == 401 and error.auth_failed is True and error.permanent is True
    assert "credentials rejected even after a token refresh" in error.message


def test_refresh_failure_after_401_is_auth_failed(local_server: LocalServer) -> None:
    provider = OAuthProvider(local_server)
    store = InMemoryTokenStore(TokenSet("at-old", "rt-revoked", None))
    authenticator = zoho(local_server, store=store)
    with pytest.raises(IntegrationError) as caught:
        send_with_auth(
            http_session(),
            Req("GET", local_server.url("/api/record")),
            method_name="FindContact",
            authenticator=authenticator,
        )
    error = caught.value
    assert error.message == (
        "401 from 127.0.0.1 (FindContact): token refresh failed — reconnect the integration"
    )
    assert error.status == 401 and error.auth_failed is True and error.permanent is True
    assert local_server.hits["/api/record"] == 1
    assert provider.token_hits == 1


def test_refresh_failure_before_a_request_is_auth_failed(local_server: LocalServer) -> None:
    provider = OAuthProvider(local_server)
    clock = Clock()
    store = InMemoryTokenStore(TokenSet("at-old", "rt-revoked", clock.now - 5))
    authenticator = zoho(local_server, store=store, clock=clock)
    with pytest.raises(IntegrationError) as caught:
        send_with_auth(
            http_session(),
            Req("GET", local_server.url("/api/record")),
            method_name="FindContact",
            authenticator=authenticator,
        )
    error = caught.value
    assert error.auth_failed is True and error.status == 401 and error.permanent is True
    assert "Token refresh failed" in error.message and "invalid_grant" in error.message
    assert "reconnect the integration" in error.message
    assert local_server.hits["/api/record"] == 0
    assert provider.token_hits == 1


def test_refresh_endpoint_down_is_transient_not_auth_failed(local_server: LocalServer) -> None:
    provider = OAuthProvider(local_server)
    provider.refresh_down = True
    clock = Clock()
    store = InMemoryTokenStore(TokenSet("at-old", "rt-1", clock.now - 5))
    provider.valid_refresh.add("rt-1")
    authenticator = zoho(local_server, store=store, clock=clock)
    with pytest.raises(IntegrationError) as caught:
        authenticator.prepare({})
    assert caught.value.permanent is False and caught.value.auth_failed is False
    assert store.load() == TokenSet("at-old", "rt-1", clock.now - 5)


def test_not_connected_is_auth_failed(local_server: LocalServer) -> None:
    with pytest.raises(IntegrationError, match="not connected") as caught:
        zoho(local_server).prepare({})
    assert caught.value.auth_failed is True


def test_concurrent_refreshes_collapse_into_one(local_server: LocalServer) -> None:
    provider = OAuthProvider(local_server, token_delay=0.2)
    provider.valid_refresh.add("rt-0")
    clock = Clock()
    store = InMemoryTokenStore(TokenSet("at-expired", "rt-0", clock.now - 1))
    authenticator = zoho(local_server, store=store, clock=clock)
    start = threading.Barrier(8)
    results: list[str] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            start.wait()
            headers: dict[str, str] = {}
            authenticator.prepare(headers)
            results.append(headers["Authorization"])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert errors == []
    assert provider.token_hits == 1
    assert results == ["Zoho-oauthtoken at-1"] * 8


def test_concurrent_401s_collapse_into_one_refresh(local_server: LocalServer) -> None:
    provider = OAuthProvider(local_server, token_delay=0.2)
    provider.valid_refresh.add("rt-0")
    store = InMemoryTokenStore(TokenSet("at-revoked", "rt-0", None))
    authenticator = zoho(local_server, store=store)
    session = http_session()
    start = threading.Barrier(8)
    results: list[Any] = []

    def worker() -> None:
        start.wait()
        response = send_with_auth(
            session,
            Req("GET", local_server.url("/api/record")),
            method_name="GetActivity",
            authenticator=authenticator,
        )
        results.append(response.json()["token"])

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == ["at-1"] * 8
    assert provider.token_hits == 1


def test_client_secret_basic_auth_for_token_endpoint(local_server: LocalServer) -> None:
    seen: list[Received] = []

    def token(request: Received) -> Reply:
        seen.append(request)
        return Reply(200, {"access_token": "a", "instance_url": "https://x.example.com"})

    local_server.route("POST", "/token", token)
    authenticator = authenticator_for(
        {
            "type": "oauth2",
            "authorize_url": "https://login.example.com/authorize",
            "token_url": local_server.url("/token"),
            "client_id": "id with space",
            "client_secret": "s:ecret",
            "client_auth": "basic",
            "token_response_map": {"instance_url": "$instance_url$"},
        },
        session=http_session(),
    )
    assert isinstance(authenticator, OAuth2Authenticator)
    tokens = authenticator.exchange_code("c", "https://p.example.com/cb")
    assert tokens.expires_at is None and tokens.extra == {"instance_url": "https://x.example.com"}
    expected = base64.b64encode(b"id+with+space:s%3Aecret").decode()
    assert seen[0].headers["Authorization"] == f"Basic {expected}"
    assert "client_secret" not in seen[0].form()


def test_tokens_are_redacted_from_errors(local_server: LocalServer) -> None:
    OAuthProvider(local_server)
    authenticator = zoho(local_server)
    authenticator.exchange_code("good-code", "https://portal.example.com/cb")
    local_server.route("GET", "/echo", lambda r: Reply(400, {"got": r.headers["Authorization"]}))
    with pytest.raises(IntegrationError) as caught:
        send_with_auth(
            http_session(),
            Req("GET", local_server.url("/echo")),
            method_name="M",
            authenticator=authenticator,
        )
    assert "at-1" not in caught.value.message
    assert "[redacted]" in caught.value.message


def test_token_set_round_trips_through_a_dict() -> None:
    tokens = TokenSet("a", "r", 12.5, {"api_domain": "https://www.zohoapis.eu"})
    assert TokenSet.from_dict(tokens.to_dict()) == tokens


# -- token exchange (RingRx) ------------------------------------------------------------------


class RingRx:
    """RingRx's token endpoints: POST /auth/token?token=&secret=, POST /auth/refresh."""

    def __init__(self, server: LocalServer) -> None:
        self.server = server
        self.serial = 0
        self.refresh_tokens: set[str] = set()
        self.access_tokens: set[str] = set()
        server.route("POST", "/auth/token", self.token)
        server.route("POST", "/auth/refresh", self.refresh)
        server.route("GET", "/myphones", self.phones)

    def issue(self) -> Reply:
        self.serial += 1
        access, refresh = f"jwt-{self.serial}", f"refresh-{self.serial}"
        self.access_tokens.add(access)
        self.refresh_tokens.add(refresh)
        return Reply(
            200,
            {
                "token_type": "Bearer",
                "access_token": access,
                "expires_in": 3600,
                "refresh_token": refresh,
            },
        )

    def token(self, request: Received) -> Reply:
        if request.query.get("token") != ["key-1"] or request.query.get("secret") != ["sec-1"]:
            return Reply(401, {"message": "Not Authenticated"})
        return self.issue()

    def refresh(self, request: Received) -> Reply:
        presented = request.query.get("refresh_token", [""])[0]
        if presented not in self.refresh_tokens:
            return Reply(401, {"message": "Not Authenticated"})
        self.refresh_tokens.discard(presented)
        return self.issue()

    def phones(self, request: Received) -> Reply:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or token not in self.access_tokens:
            return Reply(401, {"message": "Not Authenticated"})
        return Reply(200, [{"id": 1}])


RINGRX_AUTH: dict[str, Any] = {
    "type": "token",
    "request": {
        "request_method": "POST",
        "request_path": "/auth/token",
        "request_parameters": {"token": "$API Token$", "secret": "$API Secret$"},
    },
    "refresh": {
        "request_method": "POST",
        "request_path": "/auth/refresh",
        "request_parameters": {"refresh_token": "$refresh_token$"},
    },
    "response_map": {
        "access_token": "$access_token$",
        "refresh_token": "$refresh_token$",
        "expires_in": "$expires_in$",
    },
}


class Runner:
    """Stands in for the executor's `run_method`: render, send without auth, map."""

    def __init__(self, server: LocalServer, properties: dict[str, str]) -> None:
        self.server = server
        self.properties = properties
        self.session = http_session()
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, method: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
        self.calls.append((method["request_path"], dict(extra)))
        render = render_with({**self.properties, **extra})
        params = render(method.get("request_parameters", {}))
        request = OutboundRequest(
            http_method=method["request_method"],
            url=self.server.url(method["request_path"]),
            # RingRx takes these in the query string even on POST.
            query=[(k, str(v)) for k, v in params.items()],
            redact={str(v) for v in params.values()},
        )
        data = self.session.send(request, method_name="auth").json() or {}
        captured = {}
        for key, template in method["response_map"].items():
            if key in data:
                captured[template.strip("$")] = data[key]
        return captured


def ringrx(
    server: LocalServer,
    *,
    store: InMemoryTokenStore | None = None,
    clock: Clock | None = None,
    secret: str = "sec-1",
    auth: dict[str, Any] | None = None,
) -> tuple[TokenExchangeAuthenticator, Runner]:
    runner = Runner(server, {"API Token": "key-1", "API Secret": secret})
    authenticator = authenticator_for(
        auth or RINGRX_AUTH,
        render=render_with({}),
        store=store if store is not None else InMemoryTokenStore(),
        lock=ThreadingRefreshLock(),
        run_method=runner,
        clock=clock or Clock(),
    )
    assert isinstance(authenticator, TokenExchangeAuthenticator)
    return authenticator, runner


def test_token_request_obtains_a_token_when_none_is_stored(local_server: LocalServer) -> None:
    RingRx(local_server)
    clock = Clock()
    store = InMemoryTokenStore()
    authenticator, runner = ringrx(local_server, store=store, clock=clock)
    response = send_with_auth(
        http_session(),
        Req("GET", local_server.url("/myphones")),
        method_name="Users",
        authenticator=authenticator,
    )
    assert response.json() == [{"id": 1}]
    assert runner.calls == [("/auth/token", {})]
    assert store.load() == TokenSet("jwt-1", "refresh-1", clock.now + 3600, {})
    assert local_server.requests_to("/myphones")[0].headers["Authorization"] == "Bearer jwt-1"


def test_token_is_refreshed_with_the_refresh_method(local_server: LocalServer) -> None:
    RingRx(local_server)
    clock = Clock()
    authenticator, runner = ringrx(local_server, clock=clock)
    authenticator.prepare({})
    clock.now += 3590
    headers: dict[str, str] = {}
    authenticator.prepare(headers)
    assert headers == {"Authorization": "Bearer jwt-2"}
    assert runner.calls[1] == (
        "/auth/refresh",
        {"refresh_token": "refresh-1", "access_token": "jwt-1"},
    )
    assert local_server.requests_to("/auth/refresh")[0].query == {"refresh_token": ["refresh-1"]}


def test_failed_refresh_falls_back_to_a_fresh_token_request(local_server: LocalServer) -> None:
    ring = RingRx(local_server)
    clock = Clock()
    authenticator, runner = ringrx(local_server, clock=clock)
    authenticator.prepare({})
    ring.refresh_tokens.clear()  # the refresh token was revoked
    clock.now += 4000
    headers: dict[str, str] = {}
    authenticator.prepare(headers)
    assert headers == {"Authorization": "Bearer jwt-2"}
    assert [path for path, _ in runner.calls] == ["/auth/token", "/auth/refresh", "/auth/token"]


def test_401_on_api_refreshes_token_type(local_server: LocalServer) -> None:
    ring = RingRx(local_server)
    authenticator, runner = ringrx(local_server)
    authenticator.prepare({})
    ring.access_tokens.clear()
    response = send_with_auth(
        http_session(),
        Req("GET", local_server.url("/myphones")),
        method_name="Users",
        authenticator=authenticator,
    )
    assert response.status == 200
    assert [path for path, _ in runner.calls] == ["/auth/token", "/auth/refresh"]


def test_token_request_rejected_is_auth_failed(local_server: LocalServer) -> None:
    RingRx(local_server)
    authenticator, _ = ringrx(local_server, secret="wrong")
    with pytest.raises(IntegrationError) as caught:
        authenticator.prepare({})
    error = caught.value
    assert error.auth_failed is True and error.permanent is True and error.status == 401
    assert "Token request failed" in error.message and "reconnect the integration" in error.message
    assert "wrong" not in error.message


def test_token_type_without_refresh_method_requests_again(local_server: LocalServer) -> None:
    RingRx(local_server)
    clock = Clock()
    auth = {k: v for k, v in RINGRX_AUTH.items() if k not in ("refresh", "response_map")}
    authenticator, runner = ringrx(local_server, clock=clock, auth=auth)
    authenticator.prepare({})
    clock.now += 4000
    authenticator.prepare({})
    assert [path for path, _ in runner.calls] == ["/auth/token", "/auth/token"]
    # Without a response_map in the block, the standard token fields are mapped.
    assert runner.calls and authenticator.request_method["response_map"]["access_token"] == (
        "$access_token$"
    )


def test_concurrent_token_requests_collapse_into_one(local_server: LocalServer) -> None:
    RingRx(local_server)
    original = local_server.routes[("POST", "/auth/token")]
    local_server.route("POST", "/auth/token", lambda r: (time.sleep(0.2), original(r))[1])
    authenticator, _ = ringrx(local_server)
    start = threading.Barrier(8)
    results: list[str] = []

    def worker() -> None:
        start.wait()
        headers: dict[str, str] = {}
        authenticator.prepare(headers)
        results.append(headers["Authorization"])

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == ["Bearer jwt-1"] * 8
    assert local_server.hits["/auth/token"] == 1
