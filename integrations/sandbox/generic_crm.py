"""A generic REST CRM that exercises every feature of the spec language (DESIGN 4.4-4.9).

Authentication (any one of):

* OAuth 2.0 authorization code: ``GET /oauth/authorize`` (consent page; ``auto_approve``
  redirects at once), ``POST /oauth/authorize`` (the page's form), ``POST /oauth/token``
  (``authorization_code`` / ``refresh_token``; client credentials in the form or HTTP Basic;
  the response carries an extra ``instance_url``), ``POST /oauth/revoke``. Access tokens
  expire after ``token_lifetime`` seconds. Then ``Authorization: Bearer <token>``.
* A static API key: ``Authorization: Bearer crm-sandbox-api-key`` or ``X-API-Key: …``.
* HTTP Basic ``sandbox`` / ``sandbox-password``.

Resources (JSON bodies, or form bodies where noted; list answers are
``{"records": [...], "total": n}`` with an ``X-Total-Count`` header):

* ``GET /me`` — the authenticated user (auth validation).
* ``GET /users`` — CRM users with emails.
* ``GET /contacts?limit=&offset=``, ``GET /contacts/<id>``, ``POST /contacts`` (201,
  ``Location``), ``PUT``/``PATCH /contacts/<id>``, ``DELETE /contacts/<id>`` (204).
* ``GET /contacts/search?phone=`` — **exact string** match on ``phone``/``mobile``: the seeded
  numbers are in mixed formats, so only the right ``phone_formats`` entry finds each one.
  ``GET /contacts/search?q=`` — case-insensitive name/email/company search.
* ``GET /accounts``, ``GET /accounts/search?name=``, ``POST /accounts`` (find-or-create).
* ``POST /activities`` (201, ``Location``, ``X-Request-Id``), ``GET /activities?call_id=``,
  ``GET``/``PUT /activities/<id>`` (PUT with a stale ``version`` gets 409),
  ``PATCH /activities/<id>/status``, ``POST /activities/<id>/recording`` (multipart; the
  ``file`` part is stored: filename, size, content type, SHA-256).
* ``GET /odata/Contacts?$filter=Phone eq '…'&$top=&$select=`` — OData shape ``{"value": [...]}``.
* ``GET /query?q=SELECT Id, Name FROM Contact WHERE Phone = '…'`` (also
  ``/services/data/<version>/query``) — Salesforce shape ``{"totalSize", "done", "records"}``.
* ``POST /search`` with ``{"filterGroups": [{"filters": [{"propertyName", "operator",
  "value"}]}], "properties": [...], "limit": n}`` — HubSpot shape ``{"total", "results"}``;
  groups are OR-ed, filters inside a group AND-ed.

Errors are ``{"error": {"code": ..., "message": ..., "field"?: ...}}``: 400 (validation,
naming the field), 401 (``unauthorized`` / ``token_expired``), 404, 409 (``duplicate``,
``version_conflict``), 429 and 500 (through failure injection).
"""

from __future__ import annotations

import base64
import hashlib
import re
from copy import deepcopy
from datetime import UTC, datetime
from typing import Any, ClassVar

from integrations.sandbox.base import (
    Answer,
    SandboxRequest,
    SandboxResponse,
    SandboxServer,
    empty_response,
    html_response,
    json_response,
    new_id,
    redirect_response,
    route,
)
from integrations.sandbox.oauth import (
    OAuthAuthority,
    OAuthError,
    add_query,
    consent_decision,
    consent_page,
)
from integrations.sandbox.queries import QuerySyntaxError, odata_parse_filter, soql_parse

DEFAULT_CLIENT_ID = "sandbox-crm-client"
DEFAULT_CLIENT_SECRET = "sandbox-crm-secret"
DEFAULT_API_KEY = "crm-sandbox-api-key"
DEFAULT_BASIC_USER = "sandbox"
DEFAULT_BASIC_PASSWORD = "sandbox-password"

SEED_USERS: list[dict[str, Any]] = [
    {
        "id": "u-1001",
        "name": "Alice Agent",
        "email": "alice@crm.example",
        "extension": "1001",
        "active": True,
    },
    {
        "id": "u-1002",
        "name": "Bob Builder",
        "email": "bob@crm.example",
        "extension": "1002",
        "active": True,
    },
    {
        "id": "u-1003",
        "name": "Carol Closer",
        "email": "carol@crm.example",
        "extension": "1003",
        "active": True,
    },
    {
        "id": "u-1004",
        "name": "Dan Departed",
        "email": "dan@crm.example",
        "extension": "",
        "active": False,
    },
]

SEED_ACCOUNTS: list[dict[str, Any]] = [
    {"id": "a-1", "name": "Acme Corp", "phone": "+14155550100", "website": "acme.example"},
    {"id": "a-2", "name": "Globex", "phone": "(212) 555-0199", "website": "globex.example"},
    {"id": "a-3", "name": "Initech", "phone": "4155550142", "website": "initech.example"},
]


def _contact(
    cid: str,
    first: str,
    last: str,
    phone: str,
    *,
    email: str,
    account_id: str | None,
    owner_id: str,
    created: str,
    updated: str,
    mobile: str = "",
    company: str = "",
) -> dict[str, Any]:
    return {
        "id": cid,
        "first_name": first,
        "last_name": last,
        "name": f"{first} {last}".strip(),
        "email": email,
        "phone": phone,
        "mobile": mobile,
        "company": company,
        "account_id": account_id,
        "owner_id": owner_id,
        "created_at": created,
        "updated_at": updated,
    }


#: Each number is stored in one format only; the comment names the format that finds it.
SEED_CONTACTS: list[dict[str, Any]] = [
    _contact(
        "c-1",
        "Jane",
        "Doe",
        "+14155550100",
        email="jane.doe@acme.example",  # e164
        account_id="a-1",
        owner_id="u-1001",
        company="Acme Corp",
        created="2024-01-10T09:00:00Z",
        updated="2024-06-01T10:00:00Z",
    ),
    _contact(
        "c-2",
        "John",
        "Smith",
        "(415) 555-0123",
        email="john.smith@example.com",  # national
        account_id=None,
        owner_id="u-1002",
        created="2024-02-11T09:00:00Z",
        updated="2024-02-11T09:00:00Z",
    ),
    _contact(
        "c-3",
        "Maria",
        "Garcia",
        "4155550144",
        email="maria@initech.example",  # national digits
        account_id="a-3",
        owner_id="u-1001",
        company="Initech",
        created="2024-03-12T09:00:00Z",
        updated="2024-05-12T09:00:00Z",
    ),
    _contact(
        "c-4",
        "Ken",
        "Tanaka",
        "14155550155",
        email="ken@example.com",  # digits
        account_id=None,
        owner_id="u-1003",
        created="2024-03-13T09:00:00Z",
        updated="2024-03-13T09:00:00Z",
    ),
    _contact(
        "c-5",
        "Ana",
        "Sousa",
        "+44 20 7946 0958",
        email="ana@umbrella.example",  # intl
        account_id=None,
        owner_id="u-1002",
        company="Umbrella Ltd",
        created="2024-04-14T09:00:00Z",
        updated="2024-04-14T09:00:00Z",
    ),
    # Two contacts with one number: several matches (owner / most recent / earliest differ).
    _contact(
        "c-6",
        "Sam",
        "Twin",
        "+14155550177",
        email="sam@twins.example",
        account_id=None,
        owner_id="u-1002",
        company="Twins LLC",
        created="2024-01-01T09:00:00Z",
        updated="2024-01-02T09:00:00Z",
    ),
    _contact(
        "c-7",
        "Sally",
        "Twin",
        "+14155550177",
        email="sally@twins.example",
        account_id=None,
        owner_id="u-1001",
        company="Twins LLC",
        created="2024-02-01T09:00:00Z",
        updated="2024-07-01T09:00:00Z",
    ),
    # A quote in the name: SOQL/OData quoting must escape it.
    _contact(
        "c-8",
        "Pat",
        "O'Brien",
        "+14155550188",
        email="pat.obrien@example.com",
        account_id="a-2",
        owner_id="u-1003",
        company="Globex",
        mobile="415-555-0189",  # dashed national, on the mobile field
        created="2024-05-15T09:00:00Z",
        updated="2024-05-15T09:00:00Z",
    ),
]

ACTIVITY_TYPES = frozenset({"call", "sms", "note", "meeting", "email"})
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

#: SOQL objects and their fields (lowercase), for ``/query``.
SOQL_OBJECTS: dict[str, set[str]] = {
    "Contact": {
        "id",
        "name",
        "firstname",
        "lastname",
        "phone",
        "mobilephone",
        "email",
        "accountid",
        "ownerid",
        "createddate",
        "lastmodifieddate",
    },
    "Account": {"id", "name", "phone", "website"},
    "User": {"id", "name", "email", "isactive"},
}
ODATA_FIELDS = {
    "id",
    "firstname",
    "lastname",
    "fullname",
    "phone",
    "mobilephone",
    "email",
    "company",
    "accountid",
}
SEARCH_PROPERTIES = (
    "firstname",
    "lastname",
    "email",
    "phone",
    "mobilephone",
    "company",
    "hs_object_id",
    "createdate",
    "lastmodifieddate",
)
SEARCH_OPERATORS = frozenset(
    {"EQ", "NEQ", "CONTAINS_TOKEN", "IN", "NOT_IN", "HAS_PROPERTY", "NOT_HAS_PROPERTY"}
)


def crm_error(
    status: int, code: str, message: str, field: str | None = None, **extra: Any
) -> SandboxResponse:
    """The CRM's error body: ``{"error": {"code", "message", "field"?}}``."""
    error: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    error.update(extra)
    return json_response({"error": error}, status)


def _invalid(field: str, message: str) -> Answer:
    return Answer(crm_error(400, "validation_error", message, field))


def _iso_now(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class GenericCrmSandbox(SandboxServer):
    """A REST CRM with OAuth2/API key/Basic auth, contacts, accounts, activities and queries.

    Tunables (``configure(...)``, restored by ``reset()``):
        token_lifetime: seconds an OAuth access token lives.
        auto_approve: ``GET /oauth/authorize`` redirects at once.
        required_headers: header name → value every API request must carry (for spec-wide
            ``request_headers`` tests); empty by default.
        max_limit: the largest ``limit`` a list accepts.
    """

    name: ClassVar[str] = "crm"
    description: ClassVar[str] = (
        "generic REST CRM: OAuth2/API key/Basic, contacts, accounts, activities, "
        "recordings, OData, SOQL and filter-group search"
    )
    tunables: ClassVar[tuple[str, ...]] = (
        "token_lifetime",
        "auto_approve",
        "required_headers",
        "max_limit",
    )

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        verbose: bool = False,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        api_key: str = DEFAULT_API_KEY,
        basic_user: str = DEFAULT_BASIC_USER,
        basic_password: str = DEFAULT_BASIC_PASSWORD,
        token_lifetime: int = 3600,
        auto_approve: bool = False,
    ) -> None:
        """Credentials are fixed per server; see the class docstring for the tunables."""
        self.client_id = client_id
        self.client_secret = client_secret
        self.api_key = api_key
        self.basic_user = basic_user
        self.basic_password = basic_password
        self.token_lifetime = token_lifetime
        self.auto_approve = auto_approve
        self.required_headers: dict[str, str] = {}
        self.max_limit = 200
        super().__init__(host=host, port=port, verbose=verbose)

    # -- state ---------------------------------------------------------------------------

    def reset_state(self) -> None:
        """Reseed users, accounts, contacts; forget tokens, activities and recordings."""
        self.oauth = OAuthAuthority(
            client_id=self.client_id,
            client_secret=self.client_secret,
            clock=self.now,
            token_lifetime=lambda: self.token_lifetime,
            token_prefix="crm_",
        )
        self.users: list[dict[str, Any]] = deepcopy(SEED_USERS)
        self.accounts: dict[str, dict[str, Any]] = {a["id"]: deepcopy(a) for a in SEED_ACCOUNTS}
        self.contacts: dict[str, dict[str, Any]] = {c["id"]: deepcopy(c) for c in SEED_CONTACTS}
        self.activities: dict[str, dict[str, Any]] = {}
        self._sequence = 0

    def state(self) -> dict[str, Any]:
        """Contacts, accounts and activities (recording contents left out)."""
        return {
            "users": self.users,
            "accounts": list(self.accounts.values()),
            "contacts": list(self.contacts.values()),
            "activities": list(self.activities.values()),
        }

    def activities_for_call(self, call_id: str) -> list[dict[str, Any]]:
        """Activities created with this ``call_id`` (a test expects exactly one per call)."""
        with self.lock:
            return [a for a in self.activities.values() if a.get("call_id") == call_id]

    def issue_tokens(self) -> dict[str, Any]:
        """A token response without the browser flow."""
        access, refresh = self.oauth.issue_directly("contacts activities")
        return self._token_body(access.token, refresh.token, access.scope)

    def expire_tokens(self) -> None:
        """Expire every access token now (refresh tokens keep working)."""
        self.oauth.expire_all()

    def _next_id(self, prefix: str) -> str:
        with self.lock:
            self._sequence += 1
            return f"{prefix}-{1000 + self._sequence}"

    # -- plumbing ------------------------------------------------------------------------

    def not_found(self, request: SandboxRequest) -> SandboxResponse:
        """Unknown routes."""
        return crm_error(404, "not_found", f"no route {request.method} {request.path}")

    def _authenticate(self, request: SandboxRequest) -> dict[str, Any]:
        """The acting user; raises Answer(401) unless OAuth, API key or Basic auth is valid."""
        for name, value in self.required_headers.items():
            if request.header(name) != value:
                raise Answer(
                    crm_error(400, "missing_header", f"header {name} must be {value!r}", name)
                )
        header = request.header("Authorization") or ""
        scheme, _, credential = header.partition(" ")
        credential = credential.strip()
        if request.header("X-API-Key") == self.api_key:
            return self.users[0]
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(credential).decode().partition(":")
            except ValueError:
                user, password = "", ""
            if user == self.basic_user and password == self.basic_password:
                return self.users[0]
            raise Answer(crm_error(401, "unauthorized", "invalid username or password"))
        if scheme.lower() == "bearer":
            if credential == self.api_key:
                return self.users[0]
            token, reason = self.oauth.check_access(credential)
            if token is not None:
                return self.users[0]
            if reason == "expired":
                raise Answer(crm_error(401, "token_expired", "the access token has expired"))
            raise Answer(crm_error(401, "unauthorized", f"invalid access token ({reason})"))
        raise Answer(crm_error(401, "unauthorized", "authentication required"))

    @staticmethod
    def _body(request: SandboxRequest) -> dict[str, Any]:
        if request.json is not None:
            if not isinstance(request.json, dict):
                raise _invalid("body", "the body must be a JSON object")
            return dict(request.json)
        if request.form:
            return {key: values[0] for key, values in request.form.items()}
        if request.body:
            raise _invalid("body", "the body must be JSON (or a form)")
        return {}

    def _limit(self, request: SandboxRequest, default: int = 50) -> tuple[int, int]:
        raw_limit, raw_offset = request.arg("limit"), request.arg("offset")
        try:
            limit = default if raw_limit is None else int(raw_limit)
        except ValueError:
            raise _invalid("limit", "limit must be an integer") from None
        if not 1 <= limit <= self.max_limit:
            raise _invalid("limit", f"limit must be between 1 and {self.max_limit}")
        try:
            offset = 0 if raw_offset is None else int(raw_offset)
        except ValueError:
            raise _invalid("offset", "offset must be an integer") from None
        if offset < 0:
            raise _invalid("offset", "offset must be 0 or more")
        return limit, offset

    @staticmethod
    def _records(records: list[dict[str, Any]], total: int | None = None) -> SandboxResponse:
        count = len(records) if total is None else total
        return json_response(
            {"records": records, "total": count}, headers={"X-Total-Count": str(count)}
        )

    # -- OAuth ---------------------------------------------------------------------------

    def _token_body(self, access: str, refresh: str | None, scope: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": int(self.token_lifetime),
            "scope": scope,
            # Like Salesforce: the API host is issued with the token.
            "instance_url": self.url,
            "issued_at": str(int(self.now() * 1000)),
        }
        if refresh is not None:
            body["refresh_token"] = refresh
        return body

    @staticmethod
    def _oauth_error(error: OAuthError) -> SandboxResponse:
        rfc_code = {
            "invalid_client_secret": "invalid_client",
            "invalid_code": "invalid_grant",
            "invalid_redirect_uri": "invalid_grant",
        }.get(error.error, error.error)
        status = 401 if rfc_code == "invalid_client" else 400
        return json_response({"error": rfc_code, "error_description": error.description}, status)

    @route("GET", "/oauth/authorize")
    def oauth_authorize(self, request: SandboxRequest) -> SandboxResponse:
        """The consent page (or an immediate redirect with ``auto_approve``)."""
        args = request.args()
        try:
            self.oauth.check_client(args.get("client_id"))
            redirect_uri = self.oauth.check_redirect_uri(args.get("redirect_uri"))
        except OAuthError as error:
            return html_response(
                f"<!doctype html><p id='error'>{error.error}: {error.description}</p>", 400
            )
        if args.get("response_type") != "code":
            return redirect_response(
                add_query(
                    redirect_uri,
                    {"error": "unsupported_response_type", "state": args.get("state", "")},
                )
            )
        fields = {
            "client_id": args["client_id"],
            "redirect_uri": redirect_uri,
            "state": args.get("state", ""),
            "scope": args.get("scope", ""),
        }
        if self.auto_approve:
            return self._approve(fields)
        return html_response(
            consent_page(
                title="Sandbox CRM",
                app_name=args["client_id"],
                scope=fields["scope"],
                action="/oauth/authorize",
                fields=fields,
            )
        )

    def _approve(self, fields: dict[str, str]) -> SandboxResponse:
        code = self.oauth.issue_code(fields["client_id"], fields["redirect_uri"], fields["scope"])
        params = {"code": code}
        if fields.get("state"):
            params["state"] = fields["state"]
        return redirect_response(add_query(fields["redirect_uri"], params))

    @route("POST", "/oauth/authorize")
    def oauth_decide(self, request: SandboxRequest) -> SandboxResponse:
        """The consent form: Accept redirects with a code, Deny with ``access_denied``."""
        return consent_decision(self.oauth, request.args(), self._approve)

    def _client_credentials(self, request: SandboxRequest) -> tuple[str | None, str | None]:
        header = request.header("Authorization") or ""
        if header.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(header[6:].strip()).decode()
            except ValueError:
                return None, None
            client_id, _, secret = decoded.partition(":")
            return client_id, secret
        return request.arg("client_id"), request.arg("client_secret")

    @route("POST", "/oauth/token")
    def oauth_token(self, request: SandboxRequest) -> SandboxResponse:
        """``authorization_code`` and ``refresh_token`` grants (form body, RFC 6749 errors)."""
        client_id, client_secret = self._client_credentials(request)
        grant_type = request.arg("grant_type")
        try:
            if grant_type == "authorization_code":
                access, refresh = self.oauth.exchange_code(
                    code=request.arg("code"),
                    client_id=client_id,
                    client_secret=client_secret,
                    redirect_uri=request.arg("redirect_uri"),
                )
                return json_response(self._token_body(access.token, refresh.token, access.scope))
            if grant_type == "refresh_token":
                access = self.oauth.refresh(
                    refresh_token=request.arg("refresh_token"),
                    client_id=client_id,
                    client_secret=client_secret,
                )
                return json_response(self._token_body(access.token, None, access.scope))
        except OAuthError as error:
            return self._oauth_error(error)
        return json_response(
            {"error": "unsupported_grant_type", "error_description": f"grant_type {grant_type!r}"},
            400,
        )

    @route("POST", "/oauth/revoke")
    def oauth_revoke(self, request: SandboxRequest) -> SandboxResponse:
        """Revoke a token (RFC 7009: 200 even for an unknown token)."""
        token = request.arg("token")
        if token:
            self.oauth.revoke(token)
        return json_response({})

    # -- users and accounts --------------------------------------------------------------

    @route("GET", "/me")
    def me(self, request: SandboxRequest) -> SandboxResponse:
        """The authenticated user."""
        return json_response(self._authenticate(request))

    @route("GET", "/users")
    def users_list(self, request: SandboxRequest) -> SandboxResponse:
        """Every user (``?active=true`` keeps active ones)."""
        self._authenticate(request)
        users = self.users
        if request.arg("active") == "true":
            users = [u for u in users if u["active"]]
        return self._records(users)

    @route("GET", "/accounts")
    def accounts_list(self, request: SandboxRequest) -> SandboxResponse:
        """Accounts, paged with ``limit``/``offset``."""
        self._authenticate(request)
        limit, offset = self._limit(request)
        with self.lock:
            accounts = list(self.accounts.values())
        return self._records(accounts[offset : offset + limit], len(accounts))

    @route("GET", "/accounts/search")
    def accounts_search(self, request: SandboxRequest) -> SandboxResponse:
        """Accounts whose name equals ``name`` (case-insensitive)."""
        self._authenticate(request)
        name = request.arg("name")
        if not name:
            raise _invalid("name", "name is required")
        with self.lock:
            found = [a for a in self.accounts.values() if a["name"].lower() == name.lower()]
        return self._records(found)

    @route("POST", "/accounts")
    def accounts_create(self, request: SandboxRequest) -> SandboxResponse:
        """Create an account (``name`` required and unique: 409 ``duplicate``)."""
        self._authenticate(request)
        body = self._body(request)
        name = str(body.get("name") or "").strip()
        if not name:
            raise _invalid("name", "name is required")
        with self.lock:
            for existing in self.accounts.values():
                if existing["name"].lower() == name.lower():
                    return crm_error(
                        409,
                        "duplicate",
                        f"an account named {name!r} exists",
                        "name",
                        existing_id=existing["id"],
                    )
            account = {
                "id": self._next_id("a"),
                "name": name,
                "phone": str(body.get("phone") or ""),
                "website": str(body.get("website") or ""),
            }
            self.accounts[account["id"]] = account
        return json_response(account, 201, {"Location": f"/accounts/{account['id']}"})

    # -- contacts ------------------------------------------------------------------------

    @route("GET", "/contacts")
    def contacts_list(self, request: SandboxRequest) -> SandboxResponse:
        """Contacts, paged with ``limit`` (1..max_limit, default 50) and ``offset``."""
        self._authenticate(request)
        limit, offset = self._limit(request)
        with self.lock:
            contacts = list(self.contacts.values())
        return self._records(contacts[offset : offset + limit], len(contacts))

    @route("GET", "/contacts/search")
    def contacts_search(self, request: SandboxRequest) -> SandboxResponse:
        """``?phone=`` exact string match on phone/mobile, or ``?q=`` text search."""
        self._authenticate(request)
        phone, query = request.arg("phone"), request.arg("q")
        with self.lock:
            contacts = list(self.contacts.values())
        if phone:
            found = [c for c in contacts if phone in (c["phone"], c["mobile"])]
        elif query:
            needle = query.lower()
            found = [
                c
                for c in contacts
                if any(needle in str(c[f]).lower() for f in ("name", "email", "company"))
            ]
        else:
            raise _invalid("phone", "phone or q is required")
        return self._records(found)

    def _contact_or_404(self, contact_id: str) -> dict[str, Any]:
        contact = self.contacts.get(contact_id)
        if contact is None:
            raise Answer(crm_error(404, "not_found", f"contact {contact_id} not found"))
        return contact

    @route("GET", "/contacts/<contact_id>")
    def contacts_get(self, request: SandboxRequest, contact_id: str) -> SandboxResponse:
        """One contact."""
        self._authenticate(request)
        with self.lock:
            return json_response(self._contact_or_404(contact_id))

    def _validate_contact(
        self, body: dict[str, Any], *, creating: bool, current_id: str | None = None
    ) -> dict[str, Any]:
        allowed = {
            "first_name",
            "last_name",
            "email",
            "phone",
            "mobile",
            "company",
            "account_id",
            "owner_id",
        }
        for key in body:
            if key not in allowed and key not in ("id", "name", "created_at", "updated_at"):
                raise _invalid(key, f"unknown field {key}")
        fields = {k: ("" if body[k] is None else body[k]) for k in allowed if k in body}
        if creating and not str(fields.get("last_name") or "").strip():
            raise _invalid("last_name", "last_name is required")
        if not creating and "last_name" in fields and not str(fields["last_name"]).strip():
            raise _invalid("last_name", "last_name cannot be empty")
        email = str(fields.get("email") or "")
        if email and not EMAIL_RE.match(email):
            raise _invalid("email", f"{email!r} is not an email address")
        if fields.get("account_id") and fields["account_id"] not in self.accounts:
            raise _invalid("account_id", f"account {fields['account_id']} does not exist")
        if fields.get("owner_id") and fields["owner_id"] not in {u["id"] for u in self.users}:
            raise _invalid("owner_id", f"user {fields['owner_id']} does not exist")
        if email:
            for other in self.contacts.values():
                if other["email"].lower() == email.lower() and other["id"] != current_id:
                    raise Answer(
                        crm_error(
                            409,
                            "duplicate",
                            f"a contact with email {email} exists",
                            "email",
                            existing_id=other["id"],
                        )
                    )
        return fields

    @route("POST", "/contacts")
    def contacts_create(self, request: SandboxRequest) -> SandboxResponse:
        """Create a contact: 201 with the record and a ``Location`` header."""
        self._authenticate(request)
        body = self._body(request)
        with self.lock:
            fields = self._validate_contact(body, creating=True)
            now = _iso_now(self.now())
            contact = {
                "id": self._next_id("c"),
                "first_name": "",
                "last_name": "",
                "email": "",
                "phone": "",
                "mobile": "",
                "company": "",
                "account_id": None,
                "owner_id": self.users[0]["id"],
                **fields,
                "created_at": now,
                "updated_at": now,
            }
            contact["name"] = f"{contact['first_name']} {contact['last_name']}".strip()
            self.contacts[contact["id"]] = contact
        return json_response(contact, 201, {"Location": f"/contacts/{contact['id']}"})

    @route("PUT", "/contacts/<contact_id>")
    @route("PATCH", "/contacts/<contact_id>")
    def contacts_update(self, request: SandboxRequest, contact_id: str) -> SandboxResponse:
        """Update the given fields of a contact."""
        self._authenticate(request)
        body = self._body(request)
        with self.lock:
            contact = self._contact_or_404(contact_id)
            fields = self._validate_contact(body, creating=False, current_id=contact_id)
            contact.update(fields)
            contact["name"] = f"{contact['first_name']} {contact['last_name']}".strip()
            contact["updated_at"] = _iso_now(self.now())
            return json_response(contact)

    @route("DELETE", "/contacts/<contact_id>")
    def contacts_delete(self, request: SandboxRequest, contact_id: str) -> SandboxResponse:
        """Delete a contact (204)."""
        self._authenticate(request)
        with self.lock:
            self._contact_or_404(contact_id)
            del self.contacts[contact_id]
        return empty_response(204)

    # -- activities ----------------------------------------------------------------------

    def _activity_or_404(self, activity_id: str) -> dict[str, Any]:
        activity = self.activities.get(activity_id)
        if activity is None:
            raise Answer(crm_error(404, "not_found", f"activity {activity_id} not found"))
        return activity

    def _validate_activity(self, body: dict[str, Any], *, creating: bool) -> dict[str, Any]:
        if creating:
            for name in ("type", "subject"):
                if not str(body.get(name) or "").strip():
                    raise _invalid(name, f"{name} is required")
        if "type" in body and body["type"] not in ACTIVITY_TYPES:
            raise _invalid("type", f"type must be one of {', '.join(sorted(ACTIVITY_TYPES))}")
        if body.get("contact_id") and body["contact_id"] not in self.contacts:
            raise _invalid("contact_id", f"contact {body['contact_id']} does not exist")
        if body.get("account_id") and body["account_id"] not in self.accounts:
            raise _invalid("account_id", f"account {body['account_id']} does not exist")
        if body.get("user_id") and body["user_id"] not in {u["id"] for u in self.users}:
            raise _invalid("user_id", f"user {body['user_id']} does not exist")
        if "duration" in body and body["duration"] is not None:
            duration = body["duration"]
            if (
                isinstance(duration, bool)
                or not isinstance(duration, int | str)
                or not (str(duration).isdigit())
            ):
                raise _invalid("duration", "duration must be a whole number of seconds")
            body["duration"] = int(duration)
        for name in ("start", "end"):
            if body.get(name):
                try:
                    datetime.fromisoformat(str(body[name]).replace("Z", "+00:00"))
                except ValueError:
                    raise _invalid(name, f"{name} must be an ISO 8601 date-time") from None
        if "direction" in body and body["direction"] not in (None, "inbound", "outbound"):
            raise _invalid("direction", "direction must be inbound or outbound")
        return body

    @route("POST", "/activities")
    def activities_create(self, request: SandboxRequest) -> SandboxResponse:
        """Create an activity (``type`` and ``subject`` required); extra fields are kept."""
        self._authenticate(request)
        body = self._body(request)
        with self.lock:
            fields = self._validate_activity(body, creating=True)
            now = _iso_now(self.now())
            activity = {
                **fields,
                "id": self._next_id("act"),
                "status": fields.get("status") or "open",
                "version": 1,
                "created_at": now,
                "updated_at": now,
                "recordings": [],
            }
            self.activities[activity["id"]] = activity
        return json_response(
            activity,
            201,
            {"Location": f"/activities/{activity['id']}", "X-Request-Id": new_id("req_")},
        )

    @route("GET", "/activities")
    def activities_list(self, request: SandboxRequest) -> SandboxResponse:
        """Activities, filtered by ``call_id`` and/or ``contact_id``."""
        self._authenticate(request)
        with self.lock:
            found = list(self.activities.values())
        for name in ("call_id", "contact_id"):
            if (value := request.arg(name)) is not None:
                found = [a for a in found if str(a.get(name)) == value]
        return self._records(found)

    @route("GET", "/activities/<activity_id>")
    def activities_get(self, request: SandboxRequest, activity_id: str) -> SandboxResponse:
        """One activity (with ``version`` for optimistic updates)."""
        self._authenticate(request)
        with self.lock:
            return json_response(self._activity_or_404(activity_id))

    @route("PUT", "/activities/<activity_id>")
    def activities_update(self, request: SandboxRequest, activity_id: str) -> SandboxResponse:
        """Update an activity; a ``version`` other than the current one gets 409."""
        self._authenticate(request)
        body = self._body(request)
        with self.lock:
            activity = self._activity_or_404(activity_id)
            if "version" in body and str(body["version"]) != str(activity["version"]):
                return crm_error(
                    409,
                    "version_conflict",
                    f"activity {activity_id} is at version {activity['version']}",
                    "version",
                    current_version=activity["version"],
                )
            fields = self._validate_activity(dict(body), creating=False)
            for key in ("id", "version", "created_at", "updated_at", "recordings"):
                fields.pop(key, None)
            activity.update(fields)
            activity["version"] += 1
            activity["updated_at"] = _iso_now(self.now())
            return json_response(activity)

    @route("PATCH", "/activities/<activity_id>/status")
    def activities_status(self, request: SandboxRequest, activity_id: str) -> SandboxResponse:
        """Set an activity's status / disposition (``status`` required)."""
        self._authenticate(request)
        body = self._body(request)
        status = str(body.get("status") or "").strip()
        if not status:
            raise _invalid("status", "status is required")
        with self.lock:
            activity = self._activity_or_404(activity_id)
            activity["status"] = status
            if body.get("disposition"):
                activity["disposition"] = body["disposition"]
            activity["version"] += 1
            activity["updated_at"] = _iso_now(self.now())
            return json_response(activity)

    @route("POST", "/activities/<activity_id>/recording")
    def activities_recording(self, request: SandboxRequest, activity_id: str) -> SandboxResponse:
        """Attach a recording: multipart with a ``file`` part (other parts kept as metadata)."""
        self._authenticate(request)
        content_type = (request.header("Content-Type") or "").lower()
        if not content_type.startswith("multipart/form-data"):
            raise _invalid("file", "send the recording as multipart/form-data")
        files = request.files.get("file") or []
        if not files:
            raise _invalid("file", "the file part is required")
        upload = files[0]
        with self.lock:
            activity = self._activity_or_404(activity_id)
            recording = {
                "id": self._next_id("rec"),
                "activity_id": activity_id,
                "filename": upload.filename,
                "content_type": upload.content_type,
                "size": upload.size,
                "sha256": hashlib.sha256(upload.content).hexdigest(),
                "fields": {key: values[0] for key, values in request.form.items()},
                "parts": [
                    {
                        "name": p.name,
                        "filename": p.filename,
                        "content_type": p.content_type,
                        "size": p.size,
                    }
                    for p in request.parts
                ],
            }
            activity["recordings"].append(recording)
        return json_response(recording, 201)

    # -- query endpoints -----------------------------------------------------------------

    @staticmethod
    def _odata_contact(contact: dict[str, Any]) -> dict[str, Any]:
        return {
            "Id": contact["id"],
            "FirstName": contact["first_name"],
            "LastName": contact["last_name"],
            "FullName": contact["name"],
            "Phone": contact["phone"],
            "MobilePhone": contact["mobile"],
            "Email": contact["email"],
            "Company": contact["company"],
            "AccountId": contact["account_id"],
        }

    @route("GET", "/odata/Contacts")
    def odata_contacts(self, request: SandboxRequest) -> SandboxResponse:
        """OData: ``$filter`` (eq/ne/contains/startswith/and/or), ``$top``, ``$select``."""
        self._authenticate(request)
        with self.lock:
            records = [self._odata_contact(c) for c in self.contacts.values()]
        if (expression := request.arg("$filter")) is not None:
            try:
                predicate = odata_parse_filter(expression, ODATA_FIELDS)
            except QuerySyntaxError as error:
                return crm_error(400, "BadRequest", f"invalid $filter: {error}", "$filter")
            records = [r for r in records if predicate(r)]
        if (top := request.arg("$top")) is not None:
            if not top.isdigit():
                return crm_error(400, "BadRequest", "$top must be a whole number", "$top")
            records = records[: int(top)]
        if (select := request.arg("$select")) is not None:
            wanted = [s.strip() for s in select.split(",") if s.strip()]
            for name in wanted:
                if name.lower() not in ODATA_FIELDS:
                    return crm_error(
                        400, "BadRequest", f"could not find a property named '{name}'", "$select"
                    )
            records = [{k: v for k, v in r.items() if k in wanted} for r in records]
        return json_response(
            {"@odata.context": f"{self.url}/odata/$metadata#Contacts", "value": records}
        )

    def _soql_rows(self, object_name: str) -> list[dict[str, Any]]:
        if object_name == "Contact":
            return [
                {
                    "Id": c["id"],
                    "Name": c["name"],
                    "FirstName": c["first_name"],
                    "LastName": c["last_name"],
                    "Phone": c["phone"],
                    "MobilePhone": c["mobile"],
                    "Email": c["email"],
                    "AccountId": c["account_id"],
                    "OwnerId": c["owner_id"],
                    "CreatedDate": c["created_at"],
                    "LastModifiedDate": c["updated_at"],
                }
                for c in self.contacts.values()
            ]
        if object_name == "Account":
            return [
                {"Id": a["id"], "Name": a["name"], "Phone": a["phone"], "Website": a["website"]}
                for a in self.accounts.values()
            ]
        return [
            {"Id": u["id"], "Name": u["name"], "Email": u["email"], "IsActive": u["active"]}
            for u in self.users
        ]

    @route("GET", "/query")
    @route("GET", "/services/data/<version>/query")
    def soql_query(self, request: SandboxRequest, version: str = "v59.0") -> SandboxResponse:
        """SOQL subset; literals honour backslash escapes (see queries.soql_parse)."""
        self._authenticate(request)
        text = request.arg("q")
        if not text:
            raise _invalid("q", "q is required")
        try:
            query = soql_parse(text, SOQL_OBJECTS)
        except QuerySyntaxError as error:
            return crm_error(400, "MALFORMED_QUERY", str(error), "q")
        with self.lock:
            rows = self._soql_rows(query.object_name)
        if query.where is not None:
            rows = [r for r in rows if query.where(r)]
        if query.limit is not None:
            rows = rows[: query.limit]
        lower = {name.lower(): name for name in rows[0]} if rows else {}
        records = []
        for row in rows:
            record: dict[str, Any] = {
                "attributes": {
                    "type": query.object_name,
                    "url": f"/services/data/{version}/sobjects/{query.object_name}/{row['Id']}",
                }
            }
            for name in query.fields:
                key = lower.get(name.lower(), name)
                record[key] = row.get(key)
            records.append(record)
        return json_response({"totalSize": len(records), "done": True, "records": records})

    @staticmethod
    def _search_properties(contact: dict[str, Any]) -> dict[str, Any]:
        return {
            "firstname": contact["first_name"],
            "lastname": contact["last_name"],
            "email": contact["email"],
            "phone": contact["phone"],
            "mobilephone": contact["mobile"],
            "company": contact["company"],
            "hs_object_id": contact["id"],
            "createdate": contact["created_at"],
            "lastmodifieddate": contact["updated_at"],
        }

    @staticmethod
    def _filter_matches(properties: dict[str, Any], spec: dict[str, Any]) -> bool:
        value = properties.get(spec["propertyName"])
        operator = spec["operator"]
        if operator == "HAS_PROPERTY":
            return bool(value)
        if operator == "NOT_HAS_PROPERTY":
            return not value
        text = "" if value is None else str(value)
        if operator == "EQ":
            return text.lower() == str(spec.get("value", "")).lower()
        if operator == "NEQ":
            return text.lower() != str(spec.get("value", "")).lower()
        if operator == "CONTAINS_TOKEN":
            needle = str(spec.get("value", "")).lower().strip("*")
            return needle in text.lower()
        values = [str(v).lower() for v in spec.get("values") or []]
        return (text.lower() in values) == (operator == "IN")

    @route("POST", "/search")
    def search(self, request: SandboxRequest) -> SandboxResponse:
        """HubSpot-style search with ``filterGroups`` (OR of ANDs), ``properties``, ``limit``."""
        self._authenticate(request)
        body = self._body(request)
        groups = body.get("filterGroups", [])
        if not isinstance(groups, list):
            raise _invalid("filterGroups", "filterGroups must be an array")
        if len(groups) > 5:
            raise _invalid("filterGroups", "at most 5 filterGroups are allowed")
        for g_index, group in enumerate(groups):
            filters = group.get("filters") if isinstance(group, dict) else None
            if not isinstance(filters, list) or not filters:
                raise _invalid(
                    f"filterGroups[{g_index}].filters", "filters must be a non-empty array"
                )
            for f_index, spec in enumerate(filters):
                where = f"filterGroups[{g_index}].filters[{f_index}]"
                if not isinstance(spec, dict):
                    raise _invalid(where, "a filter must be an object")
                if spec.get("propertyName") not in SEARCH_PROPERTIES:
                    raise _invalid(
                        f"{where}.propertyName", f"unknown property {spec.get('propertyName')!r}"
                    )
                if spec.get("operator") not in SEARCH_OPERATORS:
                    raise _invalid(
                        f"{where}.operator", f"unknown operator {spec.get('operator')!r}"
                    )
                if spec["operator"] in ("IN", "NOT_IN") and not isinstance(
                    spec.get("values"), list
                ):
                    raise _invalid(f"{where}.values", "IN needs a values array")
                if spec["operator"] in ("EQ", "NEQ", "CONTAINS_TOKEN") and "value" not in spec:
                    raise _invalid(f"{where}.value", "value is required")
        limit = body.get("limit", 10)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100:
            raise _invalid("limit", "limit must be an integer between 1 and 100")
        properties = body.get("properties") or ["firstname", "lastname", "email", "phone"]
        with self.lock:
            contacts = list(self.contacts.values())
        results = []
        query = str(body.get("query") or "").lower()
        for contact in contacts:
            props = self._search_properties(contact)
            if groups and not any(
                all(self._filter_matches(props, f) for f in g["filters"]) for g in groups
            ):
                continue
            if query and not any(query in str(v).lower() for v in props.values()):
                continue
            results.append(
                {
                    "id": contact["id"],
                    "properties": {name: props.get(name) for name in properties},
                    "createdAt": contact["created_at"],
                    "updatedAt": contact["updated_at"],
                    "archived": False,
                }
            )
        return json_response({"total": len(results), "results": results[:limit]})
