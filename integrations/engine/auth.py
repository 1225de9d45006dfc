"""Authentication of outbound requests (DESIGN 4.4).

A spec's ``authentication`` block becomes an :class:`Authenticator` (see :func:`authenticator_for`)
that the executor uses for every request of an installation::

    authenticator = authenticator_for(spec["authentication"], render=render, session=session,
                                      store=token_store, lock=refresh_lock, run_method=run_method)
    response = send_with_auth(session, rendered_request, method_name="FindContact",
                              authenticator=authenticator)

Types:

* ``none`` — nothing is added.
* ``basic`` — HTTP Basic from ``username`` and ``password``.
* ``bearer`` — a static ``token`` in ``header`` (default ``Authorization``) with ``scheme`` (default
  ``Bearer``; ``""`` sends the bare token).
* ``oauth2`` — the authorization-code (web server) flow:
  :meth:`OAuth2Authenticator.authorization_url` and :meth:`OAuth2Authenticator.exchange_code`
  are used by the portal's connect view; afterwards the access token is refreshed shortly
  before it expires and once after a 401. Fields of the token response named in
  ``token_response_map`` (Zoho's ``api_domain``, Salesforce's ``instance_url``) are kept in
  ``TokenSet.extra`` and exposed by :meth:`Authenticator.values`.
* ``token`` — a token exchange (RingRx ``POST /auth/token?token=…&secret=…``): the spec's
  ``request`` method obtains a token, its ``refresh`` method refreshes it, and when refreshing
  fails a fresh ``request`` is made. The methods are run by the executor through the injected
  ``run_method``.

Tokens live in a :class:`TokenStore` and refreshes happen under a :class:`RefreshLock`, both
supplied by the caller (the portal stores tokens encrypted and locks per installation across
workers). Inside the lock the tokens are loaded again, so concurrent refreshes of one installation
collapse into one.

Nothing here imports Django or the engine's request-building modules; all HTTP goes through
:class:`integrations.engine.http.HttpSession`.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests
import requests.auth

from integrations.engine.errors import IntegrationError, Problem, SpecError
from integrations.engine.http import HttpResponse, HttpSession, OutboundRequest, RequestLike

__all__ = [
    "Authenticator",
    "BasicAuthenticator",
    "BearerAuthenticator",
    "InMemoryTokenStore",
    "NoAuthenticator",
    "OAuth2Authenticator",
    "RefreshLock",
    "RunMethod",
    "ThreadingRefreshLock",
    "TokenExchangeAuthenticator",
    "TokenSet",
    "TokenStore",
    "authenticator_for",
    "send_with_auth",
]

#: Refresh a token this many seconds before it expires.
DEFAULT_REFRESH_SKEW = 60.0

#: Runs a spec method (a method dict) with extra values and returns the values its
#: ``response_map`` captured. Supplied by the executor; it must send the request *without*
#: authentication (token requests authenticate with their own parameters).
RunMethod = Callable[[dict[str, Any], Mapping[str, Any]], dict[str, Any]]

_TOKEN_FIELDS = ("access_token", "refresh_token", "expires_in")
_DEFAULT_TOKEN_RESPONSE_MAP = {name: f"${name}$" for name in _TOKEN_FIELDS}


# ---------------------------------------------------------------------------
# Tokens and where they are kept
# ---------------------------------------------------------------------------


@dataclass
class TokenSet:
    """An installation's tokens. `expires_at` is epoch seconds, or None when unknown.

    `extra` holds values captured from the token response (``token_response_map``) or, for the
    ``token`` type, any other value its ``response_map`` captured; they are installation values.
    """

    access_token: str
    refresh_token: str | None = None
    expires_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def expires_within(self, seconds: float, *, now: float) -> bool:
        """True when the access token expires in less than `seconds` (never, if unknown)."""
        return self.expires_at is not None and self.expires_at - seconds <= now

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form, for a store that encrypts and saves it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TokenSet:
        """The inverse of :meth:`to_dict`."""
        return cls(
            access_token=str(data["access_token"]),
            refresh_token=data.get("refresh_token"),
            expires_at=data.get("expires_at"),
            extra=dict(data.get("extra") or {}),
        )


class TokenStore(Protocol):
    """Where one installation's tokens are kept (the portal: an encrypted model field)."""

    def load(self) -> TokenSet | None: ...

    def save(self, tokens: TokenSet) -> None: ...


class RefreshLock(Protocol):
    """A lock around one installation's token refresh (the portal: a database or Redis lock).

    Calling it returns a context manager held while refreshing.
    """

    def __call__(self) -> AbstractContextManager[None]: ...


class InMemoryTokenStore:
    """A :class:`TokenStore` in memory, for tests and the command line."""

    def __init__(self, tokens: TokenSet | None = None) -> None:
        self._tokens = tokens
        self._mutex = threading.Lock()
        self.saves = 0

    def load(self) -> TokenSet | None:
        with self._mutex:
            return dataclasses.replace(self._tokens) if self._tokens else None

    def save(self, tokens: TokenSet) -> None:
        with self._mutex:
            self._tokens = dataclasses.replace(tokens, extra=dict(tokens.extra))
            self.saves += 1


class ThreadingRefreshLock:
    """A :class:`RefreshLock` for one process (threads), for tests and the command line."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            yield


# ---------------------------------------------------------------------------
# Authenticators
# ---------------------------------------------------------------------------


class _RequestsAuth(requests.auth.AuthBase):
    """Adapts an :class:`Authenticator` to requests, so each attempt gets a current token."""

    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        headers: dict[str, str] = {}
        self.authenticator.prepare(headers)
        request.headers.update(headers)
        return request


class Authenticator:
    """Adds credentials to requests. The base class is the ``none`` type.

    The executor calls :meth:`prepare` on the headers of every request (or passes
    :meth:`requests_auth` to `HttpSession.send`), and after a 401 calls
    :meth:`handle_unauthorized` once: if it returns True the request is retried once.
    :func:`send_with_auth` does exactly that.
    """

    kind = "none"

    def prepare(self, headers: dict[str, str]) -> None:
        """Add the credentials to `headers`, first refreshing an expiring token.

        Raises:
            IntegrationError: no usable credentials (``auth_failed=True``), or a transient
                failure of the token endpoint (``permanent=False``).
        """

    def handle_unauthorized(self) -> bool:
        """React to a 401: refresh the credentials. True if the request should be retried.

        Static credentials cannot be refreshed: False.

        Raises:
            IntegrationError: the refresh was refused (``auth_failed=True``) or could not be
                completed now (``permanent=False``).
        """
        return False

    def secrets(self) -> set[str]:
        """Every secret this authenticator knows, to be redacted from logs and errors."""
        return set()

    def values(self) -> dict[str, Any]:
        """Installation values captured with the tokens (``token_response_map``)."""
        return {}

    def requests_auth(self) -> requests.auth.AuthBase:
        """This authenticator as a requests auth object, applied on every attempt."""
        return _RequestsAuth(self)


class NoAuthenticator(Authenticator):
    """The ``none`` type."""


class BasicAuthenticator(Authenticator):
    """The ``basic`` type: ``Authorization: Basic base64(username:password)`` (UTF-8)."""

    kind = "basic"

    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self.password = password
        raw = f"{username}:{password}".encode()
        self._encoded = base64.b64encode(raw).decode("ascii")

    def prepare(self, headers: dict[str, str]) -> None:
        headers["Authorization"] = f"Basic {self._encoded}"

    def secrets(self) -> set[str]:
        return {s for s in (self.password, self._encoded) if s}


_LINE_BREAKS = frozenset("\r\n\x00")
_PASTE_AGAIN = "paste it again without spaces or new lines"


def _header_value(scheme: str, token: str, *, source: str, advice: str = _PASTE_AGAIN) -> str:
    """`scheme token` for an auth header; refuses a value with a line break.

    A pasted API key often ends in a new line; sent as is, it would split the header (and
    http.client's error would quote it). `source` names where the value came from ("the API
    Key"); the value itself is never in the message.

    Raises:
        IntegrationError: permanent, `auth_failed` (a person must fix the credential).
    """
    value = f"{scheme} {token}" if scheme else token
    if _LINE_BREAKS.intersection(value):
        raise IntegrationError(
            f"{source[:1].upper()}{source[1:]} contains a line break; {advice}",
            permanent=True,
            auth_failed=True,
        )
    return value


_PLACEHOLDER = re.compile(r"\$([^$]+)\$|\{([^{}]+)\}")


def _credential_source(*templates: Any) -> str:
    """Which properties a credential is rendered from, for messages: "the API Key"."""
    names: list[str] = []
    for template in templates:
        for match in _PLACEHOLDER.finditer(template if isinstance(template, str) else ""):
            name = match.group(1) or match.group(2)
            if name not in names:
                names.append(name)
    return " or ".join(f"the {name}" for name in names) or "the token"


class BearerAuthenticator(Authenticator):
    """The ``bearer`` type: a static token in `header` with `scheme` (``""``: the bare token)."""

    kind = "bearer"

    def __init__(
        self,
        token: str,
        *,
        header: str = "Authorization",
        scheme: str = "Bearer",
        source: str = "the token",
    ) -> None:
        self.token = token
        self.header = header
        self.scheme = scheme
        # Where the token comes from, for messages ("the API Key").
        self.source = source

    def prepare(self, headers: dict[str, str]) -> None:
        headers[self.header] = _header_value(self.scheme, self.token, source=self.source)

    def secrets(self) -> set[str]:
        return {self.token} if self.token else set()


class _RefreshingAuthenticator(Authenticator):
    """Shared by ``oauth2`` and ``token``: stored tokens, refresh before expiry and on 401,
    one refresh at a time per installation."""

    def __init__(
        self,
        *,
        store: TokenStore,
        lock: RefreshLock,
        header: str = "Authorization",
        scheme: str = "Bearer",
        clock: Callable[[], float] = time.time,
        refresh_skew: float = DEFAULT_REFRESH_SKEW,
    ) -> None:
        self.store = store
        self.lock = lock
        self.header = header
        self.scheme = scheme
        self.clock = clock
        self.refresh_skew = refresh_skew
        # The token each thread last sent, to tell after a 401 whether another thread has
        # refreshed since.
        self._sent = threading.local()

    # -- the Authenticator API -------------------------------------------------------------

    def prepare(self, headers: dict[str, str]) -> None:
        tokens = self.current_tokens()
        self._sent.access_token = tokens.access_token
        headers[self.header] = _header_value(
            self.scheme,
            tokens.access_token,
            source="the access token the provider issued",
            advice="reconnect the integration",
        )

    def handle_unauthorized(self) -> bool:
        rejected = getattr(self._sent, "access_token", None)
        self._renew_locked(rejected=rejected, forced=True)
        return True

    def secrets(self) -> set[str]:
        tokens = self.store.load()
        found = set(self._static_secrets())
        if tokens is not None:
            found |= {s for s in (tokens.access_token, tokens.refresh_token) if s}
        return found

    def values(self) -> dict[str, Any]:
        tokens = self.store.load()
        return dict(tokens.extra) if tokens else {}

    # -- tokens ----------------------------------------------------------------------------

    def current_tokens(self) -> TokenSet:
        """The stored tokens, renewed first if missing (when possible) or about to expire.

        Raises:
            IntegrationError: as :meth:`Authenticator.prepare`.
        """
        tokens = self.store.load()
        if tokens is None or tokens.expires_within(self.refresh_skew, now=self.clock()):
            tokens = self._renew_locked(rejected=None, forced=False)
        return tokens

    def _renew_locked(self, *, rejected: str | None, forced: bool) -> TokenSet:
        with self.lock():
            # Someone may have renewed while we waited for the lock: use theirs.
            current = self.store.load()
            if current is not None:
                if forced and rejected is not None and current.access_token != rejected:
                    return current
                if not forced and not current.expires_within(self.refresh_skew, now=self.clock()):
                    return current
            renewed = self._renew(current)
            self.store.save(renewed)
            return renewed

    def _tokens_from(
        self, captured: Mapping[str, Any], previous: TokenSet | None, extra: Mapping[str, Any]
    ) -> TokenSet:
        access = captured.get("access_token")
        if not access:
            raise IntegrationError(
                f"The token response had no access_token ({self.kind} authentication) — check "
                "the integration's credentials and the spec's authentication response_map",
                auth_failed=True,
                permanent=True,
            )
        expires_in = captured.get("expires_in")
        expires_at = None
        try:
            if expires_in not in (None, ""):
                expires_at = self.clock() + float(expires_in)
        except (TypeError, ValueError):
            expires_at = None
        merged = dict(previous.extra) if previous else {}
        merged.update(extra)
        return TokenSet(
            access_token=str(access),
            # Providers that do not rotate refresh tokens omit them on refresh: keep ours.
            refresh_token=str(captured.get("refresh_token") or "")
            or (previous.refresh_token if previous else None),
            expires_at=expires_at,
            extra=merged,
        )

    def _renew(self, current: TokenSet | None) -> TokenSet:
        raise NotImplementedError

    def _static_secrets(self) -> set[str]:
        return set()


class OAuth2Authenticator(_RefreshingAuthenticator):
    """The ``oauth2`` type (authorization-code flow)."""

    kind = "oauth2"

    def __init__(
        self,
        *,
        authorize_url: str,
        token_url: str,
        client_id: str,
        client_secret: str,
        session: HttpSession,
        store: TokenStore,
        lock: RefreshLock,
        scope: str | list[str] | None = None,
        extra_authorize_params: Mapping[str, Any] | None = None,
        token_response_map: Mapping[str, Any] | None = None,
        client_auth: str = "body",
        header: str = "Authorization",
        scheme: str = "Bearer",
        clock: Callable[[], float] = time.time,
        refresh_skew: float = DEFAULT_REFRESH_SKEW,
    ) -> None:
        super().__init__(
            store=store,
            lock=lock,
            header=header,
            scheme=scheme,
            clock=clock,
            refresh_skew=refresh_skew,
        )
        self.authorize_url = authorize_url
        self.token_url = token_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.session = session
        self.scope = " ".join(scope) if isinstance(scope, list | tuple) else scope
        self.extra_authorize_params = dict(extra_authorize_params or {})
        self.token_response_map = dict(token_response_map or {})
        if client_auth not in ("body", "basic"):
            raise SpecError(Problem("/authentication/client_auth", 'must be "body" or "basic"'))
        self.client_auth = client_auth

    # -- the connect flow (portal views) -----------------------------------------------------

    def authorization_url(self, state: str, redirect_uri: str) -> str:
        """The provider URL to send a person to, to grant access.

        Includes ``response_type=code``, the client id, `redirect_uri`, the scope, `state` and the
        spec's ``extra_authorize_params`` (Zoho: ``access_type=offline``, ``prompt=consent``);
        parameters already in ``authorize_url`` are kept.
        """
        parts = urllib.parse.urlsplit(self.authorize_url)
        params = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        params += [
            ("response_type", "code"),
            ("client_id", self.client_id),
            ("redirect_uri", redirect_uri),
        ]
        if self.scope:
            params.append(("scope", self.scope))
        params.append(("state", state))
        for name, value in self.extra_authorize_params.items():
            if value is None:
                continue
            params.append((name, _as_text(value)))
        return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(params)))

    def exchange_code(self, code: str, redirect_uri: str) -> TokenSet:
        """Exchange an authorization `code` for tokens, save them and return them.

        Raises:
            IntegrationError: the provider refused the code (``auth_failed=True``) or could not
                be reached (``permanent=False``).
        """
        form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
        ]
        with self.lock():
            previous = self.store.load()
            tokens = self._token_request(form, previous, purpose="code exchange", secret=code)
            self.store.save(tokens)
        return tokens

    # -- refreshing --------------------------------------------------------------------------

    def _renew(self, current: TokenSet | None) -> TokenSet:
        if current is None:
            raise IntegrationError(
                "This integration is not connected — connect it with OAuth in the portal",
                auth_failed=True,
                permanent=True,
            )
        if not current.refresh_token:
            raise IntegrationError(
                f"The access token for {_host(self.token_url)} expired and there is no refresh "
                "token — reconnect the integration",
                status=401,
                auth_failed=True,
                permanent=True,
            )
        form = [("grant_type", "refresh_token"), ("refresh_token", current.refresh_token)]
        return self._token_request(
            form, current, purpose="token refresh", secret=current.refresh_token
        )

    def _token_request(
        self,
        form: list[tuple[str, str]],
        previous: TokenSet | None,
        *,
        purpose: str,
        secret: str,
    ) -> TokenSet:
        headers = {"Accept": "application/json"}
        if self.client_auth == "basic":
            # RFC 6749 2.3.1: client id and secret are form-encoded before Basic encoding.
            pair = (
                f"{urllib.parse.quote_plus(self.client_id)}:"
                f"{urllib.parse.quote_plus(self.client_secret)}"
            )
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form = [*form, ("client_id", self.client_id), ("client_secret", self.client_secret)]
        request = OutboundRequest(
            http_method="POST",
            url=self.token_url,
            headers=headers,
            content_type="application/x-www-form-urlencoded",
            form=form,
            redact={s for s in (self.client_secret, secret) if s},
        )
        host = _host(self.token_url)
        try:
            response = self.session.send(request, method_name=f"OAuth {purpose}")
        except IntegrationError as error:
            if error.permanent and error.status is not None and 400 <= error.status < 500:
                raise _auth_failed(error.status, host, purpose, error.response_body) from error
            raise
        data = _token_response_data(response)
        if not data.get("access_token"):
            # Zoho answers 200 {"error": "invalid_code"} for a bad or used code.
            raise _auth_failed(response.status, host, purpose, str(data.get("error") or ""))
        extra = _capture(self.token_response_map, data)
        return self._tokens_from(data, previous, extra)

    def _static_secrets(self) -> set[str]:
        return {self.client_secret} if self.client_secret else set()


class TokenExchangeAuthenticator(_RefreshingAuthenticator):
    """The ``token`` type: a spec method obtains a token, another refreshes it.

    With no stored token (or when refreshing fails) the ``request`` method is run: its
    credentials are installation properties, so no person is needed.
    """

    kind = "token"

    def __init__(
        self,
        *,
        request_method: Mapping[str, Any],
        refresh_method: Mapping[str, Any] | None,
        run_method: RunMethod,
        store: TokenStore,
        lock: RefreshLock,
        response_map: Any = None,
        header: str = "Authorization",
        scheme: str = "Bearer",
        clock: Callable[[], float] = time.time,
        refresh_skew: float = DEFAULT_REFRESH_SKEW,
    ) -> None:
        super().__init__(
            store=store,
            lock=lock,
            header=header,
            scheme=scheme,
            clock=clock,
            refresh_skew=refresh_skew,
        )
        default_map = response_map if response_map is not None else _DEFAULT_TOKEN_RESPONSE_MAP
        self.request_method = _with_response_map(request_method, default_map)
        self.refresh_method = (
            _with_response_map(refresh_method, default_map) if refresh_method else None
        )
        self.run_method = run_method

    def _renew(self, current: TokenSet | None) -> TokenSet:
        if self.refresh_method is not None and current is not None and current.refresh_token:
            extra = {
                "refresh_token": current.refresh_token,
                "access_token": current.access_token,
            }
            try:
                return self._run(self.refresh_method, extra, current)
            except IntegrationError:
                # RingRx: "If the refresh token is itself invalid or expired, re-authenticate
                # from the beginning via POST /auth/token." A fresh request decides.
                pass
        try:
            return self._run(self.request_method, {}, current)
        except IntegrationError as error:
            # Only the provider refusing the credentials (a 4xx answer) needs a person to
            # reconnect; a refused address or a malformed answer says what it is.
            refused = error.status is not None and 400 <= error.status < 500
            if error.auth_failed or not error.permanent or not refused:
                raise
            raise _auth_failed(
                error.status, _host(error.url or ""), "token request", error.response_body
            ) from error

    def _run(
        self, method: dict[str, Any], extra: Mapping[str, Any], previous: TokenSet | None
    ) -> TokenSet:
        captured = dict(self.run_method(method, extra) or {})
        others = {k: v for k, v in captured.items() if k not in _TOKEN_FIELDS}
        return self._tokens_from(captured, previous, others)


# ---------------------------------------------------------------------------
# Building an authenticator from a spec
# ---------------------------------------------------------------------------

_NOT_RENDERED = frozenset({"type", "request", "refresh", "response_map", "token_response_map"})


def authenticator_for(
    auth: Mapping[str, Any] | None,
    *,
    render: Callable[[Any], Any] | None = None,
    session: HttpSession | None = None,
    store: TokenStore | None = None,
    lock: RefreshLock | None = None,
    run_method: RunMethod | None = None,
    clock: Callable[[], float] = time.time,
    refresh_skew: float = DEFAULT_REFRESH_SKEW,
) -> Authenticator:
    """Build the authenticator for a spec's ``authentication`` block.

    `auth` may be rendered already, or `render` is applied to each of its values (not to the
    ``token`` type's ``request``/``refresh`` methods, which `run_method` renders when it runs
    them, with ``$refresh_token$`` and ``$access_token$`` among its extra values).
    `session` is required for ``oauth2``, `run_method` for ``token``; `store` and `lock`
    default to in-memory ones (tests, command line).

    Raises:
        SpecError: unknown type or a missing field, naming it.
    """
    if not auth:
        return NoAuthenticator()
    kind = str(auth.get("type") or "none")
    fields = {
        key: (render(value) if render is not None and key not in _NOT_RENDERED else value)
        for key, value in auth.items()
    }

    def required(name: str) -> str:
        value = fields.get(name)
        if value in (None, ""):
            raise SpecError(
                Problem(f"/authentication/{name}", f"required for {kind} authentication")
            )
        return _as_text(value)

    header = _as_text(fields.get("header") or "Authorization")
    scheme_value = fields.get("scheme")
    if kind == "none":
        return NoAuthenticator()
    if kind == "basic":
        return BasicAuthenticator(required("username"), _as_text(fields.get("password") or ""))
    if kind == "bearer":
        scheme = "Bearer" if scheme_value is None else _as_text(scheme_value)
        return BearerAuthenticator(
            required("token"),
            header=header,
            scheme=scheme,
            source=_credential_source(auth.get("token"), auth.get("scheme")),
        )
    store = store if store is not None else InMemoryTokenStore()
    lock = lock if lock is not None else ThreadingRefreshLock()
    scheme = "Bearer" if scheme_value is None else _as_text(scheme_value)
    if kind == "oauth2":
        if session is None:
            raise TypeError("oauth2 authentication needs an HttpSession")
        extra_params = fields.get("extra_authorize_params") or {}
        if not isinstance(extra_params, Mapping):
            raise SpecError(Problem("/authentication/extra_authorize_params", "must be an object"))
        return OAuth2Authenticator(
            authorize_url=required("authorize_url"),
            token_url=required("token_url"),
            client_id=required("client_id"),
            client_secret=_as_text(fields.get("client_secret") or ""),
            scope=fields.get("scope"),
            extra_authorize_params=extra_params,
            token_response_map=auth.get("token_response_map"),
            client_auth=_as_text(fields.get("client_auth") or "body"),
            session=session,
            store=store,
            lock=lock,
            header=header,
            scheme=scheme,
            clock=clock,
            refresh_skew=refresh_skew,
        )
    if kind == "token":
        if run_method is None:
            raise TypeError("token authentication needs a run_method")
        request_method = auth.get("request")
        if not isinstance(request_method, Mapping):
            raise SpecError(Problem("/authentication/request", "required for token authentication"))
        refresh_method = auth.get("refresh")
        if refresh_method is not None and not isinstance(refresh_method, Mapping):
            raise SpecError(Problem("/authentication/refresh", "must be a method object"))
        return TokenExchangeAuthenticator(
            request_method=request_method,
            refresh_method=refresh_method,
            run_method=run_method,
            response_map=auth.get("response_map"),
            store=store,
            lock=lock,
            header=header,
            scheme=scheme,
            clock=clock,
            refresh_skew=refresh_skew,
        )
    raise SpecError(
        Problem(
            "/authentication/type",
            f"unknown authentication type {kind!r} (basic, bearer, oauth2, token, none)",
        )
    )


# ---------------------------------------------------------------------------
# Sending with authentication
# ---------------------------------------------------------------------------


def send_with_auth(
    session: HttpSession,
    request: RequestLike,
    *,
    method_name: str,
    authenticator: Authenticator,
) -> HttpResponse:
    """Send `request` with credentials; after a 401, refresh once and retry once.

    The authenticator's secrets are added to the request's redaction set.

    Raises:
        IntegrationError: as `HttpSession.send`; when credentials are rejected and cannot be
            refreshed, or are rejected again after a refresh, or the refresh itself is refused,
            with ``status=401``, ``auth_failed=True``, ``permanent=True`` and a message such as
            "401 from crm.example.com (FindContact): token refresh failed — reconnect the
            integration".
    """
    auth = authenticator.requests_auth()
    try:
        return session.send(
            _with_secrets(request, authenticator), method_name=method_name, auth=auth
        )
    except IntegrationError as error:
        # An auth_failed error here came from `prepare` (a refresh before sending was
        # refused): refreshing again cannot help.
        if error.status != 401 or error.auth_failed:
            raise
        first = error
    host = _host(first.url or request.url)
    try:
        refreshed = authenticator.handle_unauthorized()
    except IntegrationError as refresh_error:
        if not refresh_error.auth_failed:
            raise
        raise IntegrationError(
            f"401 from {host} ({method_name}): token refresh failed — reconnect the integration",
            status=401,
            method=method_name,
            url=first.url,
            permanent=True,
            auth_failed=True,
            response_body=first.response_body,
        ) from refresh_error
    if not refreshed:
        first.auth_failed = True
        raise first
    try:
        return session.send(
            _with_secrets(request, authenticator), method_name=method_name, auth=auth
        )
    except IntegrationError as error:
        if error.status != 401:
            raise
        raise IntegrationError(
            f"401 from {host} ({method_name}): credentials rejected even after a token refresh "
            "— reconnect the integration",
            status=401,
            method=method_name,
            url=error.url,
            permanent=True,
            auth_failed=True,
            response_body=error.response_body,
        ) from error


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _with_secrets(request: RequestLike, authenticator: Authenticator) -> RequestLike:
    secrets = authenticator.secrets()
    if not secrets:
        return request
    merged = set(request.redact or set()) | secrets
    if dataclasses.is_dataclass(request) and not isinstance(request, type):
        return dataclasses.replace(request, redact=merged)
    request.redact = merged
    return request


def _with_response_map(method: Mapping[str, Any], default_map: Any) -> dict[str, Any]:
    method = dict(method)
    method.setdefault("response_map", default_map)
    return method


def _auth_failed(
    status: int | None, host: str, purpose: str, detail: str | None
) -> IntegrationError:
    """The error for credentials the provider refused: a person must reconnect.

    Its status is 401 whatever the token endpoint answered (often 400 ``invalid_grant``), so
    callers can treat every ``auth_failed`` error alike; the message keeps the real answer.
    """
    shown = f"{status} from {host}" if status else host
    why = f": {detail[:200]}" if detail else ""
    return IntegrationError(
        f"{purpose.capitalize()} failed ({shown}{why}) — reconnect the integration",
        status=401,
        method=purpose,
        permanent=True,
        auth_failed=True,
        response_body=detail,
    )


def _token_response_data(response: HttpResponse) -> dict[str, Any]:
    data = response.json()
    if isinstance(data, dict):
        return data
    # A few providers still answer application/x-www-form-urlencoded (RFC 6749 predecessors).
    pairs = urllib.parse.parse_qsl(response.text.strip(), keep_blank_values=True)
    return dict(pairs) if pairs and "access_token" in dict(pairs) else {}


def _placeholder_name(template: Any) -> str | None:
    if not isinstance(template, str):
        return None
    text = template.strip()
    if len(text) > 2 and text[0] == "$" and text[-1] == "$":
        return text[1:-1]
    if len(text) > 2 and text[0] == "{" and text[-1] == "}":
        return text[1:-1]
    return text or None


def _capture(mapping: Mapping[str, Any], data: Any) -> dict[str, Any]:
    """Values named by a `token_response_map` (it mirrors the response's shape)."""
    captured: dict[str, Any] = {}
    if not isinstance(data, Mapping):
        return captured
    for key, template in mapping.items():
        if key not in data:
            continue
        if isinstance(template, Mapping):
            captured.update(_capture(template, data[key]))
        elif (name := _placeholder_name(template)) is not None:
            captured[name] = data[key]
    return captured


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _host(url: str) -> str:
    try:
        return urllib.parse.urlsplit(url).hostname or url or "the provider"
    except ValueError:
        return url or "the provider"
