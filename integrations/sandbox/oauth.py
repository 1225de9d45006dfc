"""An OAuth 2.0 authorization-code authority shared by the sandbox CRMs.

It keeps the registered client, the authorization codes, and the access and refresh tokens
it issued, and renders the consent page. The imitations (Zoho, the generic CRM) wrap it in
their own endpoints and error shapes. Time comes from the owning server's clock so tests
can expire tokens without sleeping.
"""

from __future__ import annotations

import html
import secrets
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

from integrations.sandbox.base import SandboxResponse, html_response, redirect_response


class OAuthError(Exception):
    """A refused OAuth request: ``error`` is the RFC 6749 code, ``description`` says why."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status


@dataclass
class AuthorizationCode:
    """A code issued by the consent page, single use, short lived."""

    code: str
    client_id: str
    redirect_uri: str
    scope: str
    expires_at: float
    used: bool = False


@dataclass
class IssuedToken:
    """An access or refresh token and what it grants."""

    token: str
    kind: str  # "access" or "refresh"
    client_id: str
    scope: str
    expires_at: float | None  # None: never expires (refresh tokens)
    refresh_token: str | None = None  # for an access token: the refresh token it came from
    revoked: bool = False


@dataclass
class OAuthAuthority:
    """Issues and checks codes and tokens for one registered client.

    ``token_lifetime`` and ``code_lifetime`` are read through callables so the owning
    server's tunables (changed by tests) take effect at once.
    """

    client_id: str
    client_secret: str
    clock: Callable[[], float]
    token_lifetime: Callable[[], float]
    code_lifetime: float = 120.0
    token_prefix: str = ""
    redirect_uris: tuple[str, ...] | None = None
    codes: dict[str, AuthorizationCode] = field(default_factory=dict)
    tokens: dict[str, IssuedToken] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)

    # -- helpers ---------------------------------------------------------------------------

    def _new_token(self) -> str:
        return f"{self.token_prefix}{secrets.token_hex(16)}.{secrets.token_hex(16)}"

    def check_client(self, client_id: str | None, client_secret: str | None = None) -> None:
        """Raise unless the id (and the secret, when given) match.

        The error codes are Zoho's (``invalid_client``, ``invalid_client_secret``); the generic
        CRM translates them to RFC 6749 codes.

        Raises:
            OAuthError: unknown client id or wrong secret.
        """
        if not client_id or not secrets.compare_digest(client_id, self.client_id):
            raise OAuthError("invalid_client", f"unknown client_id {client_id!r}", 401)
        if client_secret is not None and not secrets.compare_digest(
            client_secret, self.client_secret
        ):
            raise OAuthError("invalid_client_secret", "client_secret does not match", 401)

    def check_redirect_uri(self, redirect_uri: str | None) -> str:
        """Return ``redirect_uri`` if acceptable (registered, or any http(s) URL).

        Raises:
            OAuthError: missing, not http(s), or not registered.
        """
        if not redirect_uri:
            raise OAuthError("invalid_request", "redirect_uri is required")
        parsed = urllib.parse.urlsplit(redirect_uri)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise OAuthError("invalid_redirect_uri", f"redirect_uri {redirect_uri!r} is not a URL")
        if self.redirect_uris is not None and redirect_uri not in self.redirect_uris:
            raise OAuthError(
                "invalid_redirect_uri", f"redirect_uri {redirect_uri!r} is not registered"
            )
        return redirect_uri

    # -- the flow --------------------------------------------------------------------------

    def issue_code(self, client_id: str, redirect_uri: str, scope: str) -> str:
        """Issue a single-use authorization code (after the user accepted)."""
        code = self._new_token()
        with self.lock:
            self.codes[code] = AuthorizationCode(
                code, client_id, redirect_uri, scope, self.clock() + self.code_lifetime
            )
        return code

    def _issue_access(self, client_id: str, scope: str, refresh_token: str) -> IssuedToken:
        token = IssuedToken(
            self._new_token(),
            "access",
            client_id,
            scope,
            self.clock() + float(self.token_lifetime()),
            refresh_token=refresh_token,
        )
        self.tokens[token.token] = token
        return token

    def exchange_code(
        self,
        *,
        code: str | None,
        client_id: str | None,
        client_secret: str | None,
        redirect_uri: str | None,
    ) -> tuple[IssuedToken, IssuedToken]:
        """Trade a code for (access token, refresh token).

        Raises:
            OAuthError: bad client, unknown/used/expired code, or redirect_uri mismatch.
        """
        self.check_client(client_id, client_secret or "")
        with self.lock:
            found = self.codes.get(code or "")
            if found is None or found.used:
                raise OAuthError("invalid_code", "the code is unknown or was already used")
            if found.expires_at < self.clock():
                raise OAuthError("invalid_code", "the code has expired")
            if redirect_uri is not None and redirect_uri != found.redirect_uri:
                raise OAuthError(
                    "invalid_redirect_uri", "redirect_uri differs from the authorization request"
                )
            found.used = True
            refresh = IssuedToken(self._new_token(), "refresh", found.client_id, found.scope, None)
            self.tokens[refresh.token] = refresh
            access = self._issue_access(found.client_id, found.scope, refresh.token)
            return access, refresh

    def refresh(
        self, *, refresh_token: str | None, client_id: str | None, client_secret: str | None
    ) -> IssuedToken:
        """Issue a new access token from a refresh token.

        Raises:
            OAuthError: bad client, or unknown/revoked refresh token.
        """
        self.check_client(client_id, client_secret or "")
        with self.lock:
            found = self.tokens.get(refresh_token or "")
            if found is None or found.kind != "refresh" or found.revoked:
                raise OAuthError("invalid_code", "the refresh token is unknown or revoked")
            return self._issue_access(found.client_id, found.scope, found.token)

    def issue_directly(self, scope: str = "") -> tuple[IssuedToken, IssuedToken]:
        """Issue a token pair without the browser flow (for tests that skip consent)."""
        with self.lock:
            refresh = IssuedToken(self._new_token(), "refresh", self.client_id, scope, None)
            self.tokens[refresh.token] = refresh
            return self._issue_access(self.client_id, scope, refresh.token), refresh

    def revoke(self, token: str) -> bool:
        """Revoke a token; revoking a refresh token revokes the access tokens it issued."""
        with self.lock:
            found = self.tokens.get(token)
            if found is None:
                return False
            found.revoked = True
            if found.kind == "refresh":
                for other in self.tokens.values():
                    if other.refresh_token == token:
                        other.revoked = True
            return True

    def check_access(self, token: str | None) -> tuple[IssuedToken | None, str]:
        """Return (the token, "") if it is a live access token, else (None, the reason)."""
        if not token:
            return None, "missing"
        with self.lock:
            found = self.tokens.get(token)
        if found is None or found.kind != "access":
            return None, "unknown"
        if found.revoked:
            return None, "revoked"
        if found.expires_at is not None and found.expires_at <= self.clock():
            return None, "expired"
        return found, ""

    def expire_all(self) -> None:
        """Make every issued access token expired now (refresh tokens still work)."""
        with self.lock:
            for token in self.tokens.values():
                if token.kind == "access":
                    token.expires_at = self.clock() - 1


def consent_page(
    *, title: str, app_name: str, scope: str, action: str, fields: dict[str, str]
) -> str:
    """The HTML consent page: the request's fields as hidden inputs, Accept and Deny buttons.

    The Accept button has ``id="accept"`` (and Deny ``id="deny"``) for browser tests.
    """
    hidden = "\n".join(
        f'    <input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
        for name, value in fields.items()
    )
    scope_items = "".join(
        f"<li>{html.escape(item)}</li>" for item in scope.replace(",", " ").split() if item
    )
    return f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{html.escape(title)}</title></head>
<body>
  <h1>{html.escape(title)}</h1>
  <p><strong>{html.escape(app_name)}</strong> would like to access your account.</p>
  <ul id="scopes">{scope_items}</ul>
  <form method="post" action="{html.escape(action)}">
{hidden}
    <button type="submit" id="accept" name="decision" value="accept">Accept</button>
    <button type="submit" id="deny" name="decision" value="deny">Deny</button>
  </form>
</body>
</html>
"""


def add_query(url: str, params: dict[str, str]) -> str:
    """``url`` with ``params`` appended to its query string."""
    split = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(split.query, keep_blank_values=True)
    query.extend(params.items())
    return urllib.parse.urlunsplit(split._replace(query=urllib.parse.urlencode(query)))


def consent_decision(
    authority: OAuthAuthority,
    args: dict[str, str],
    approve: Callable[[dict[str, str]], SandboxResponse],
) -> SandboxResponse:
    """Answer the consent form: Accept → `approve(fields)` (a redirect carrying a code),
    Deny → a redirect with ``error=access_denied``; an unknown client or redirect URI → 400."""
    try:
        authority.check_client(args.get("client_id"))
        redirect_uri = authority.check_redirect_uri(args.get("redirect_uri"))
    except OAuthError as error:
        return html_response(f"<p id='error'>{error.error}</p>", 400)
    if args.get("decision") != "accept":
        params = {"error": "access_denied"}
        if args.get("state"):
            params["state"] = args["state"]
        return redirect_response(add_query(redirect_uri, params))
    return approve(
        {
            "client_id": args["client_id"],
            "redirect_uri": redirect_uri,
            "state": args.get("state", ""),
            "scope": args.get("scope", ""),
        }
    )
