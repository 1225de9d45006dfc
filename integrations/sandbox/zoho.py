"""An imitation of Zoho CRM's PhoneBridge API and Zoho Accounts' OAuth 2.0 server.

Source: shared/seeds/zoho-phonebridge-api.txt. One server plays both hosts:

* Zoho Accounts (``https://accounts.zoho.com``): ``GET /oauth/v2/auth`` (consent page),
  ``POST /oauth/v2/auth/approve`` (the page's form), ``POST /oauth/v2/token``
  (``authorization_code`` and ``refresh_token`` grants), ``POST /oauth/v2/token/revoke``.
* Zoho CRM (``https://www.zohoapis.com``): every ``/crm/v2/phonebridge/...`` endpoint of the
  seed, authenticated with ``Authorization: Zoho-oauthtoken <access token>``.

The token response's ``api_domain`` is this server's URL, so a client that honours it (as it
must for Zoho's data centres) keeps talking to the sandbox.

Quirks imitated on purpose:

* Zoho Accounts answers token-endpoint errors with HTTP 200 and ``{"error": "invalid_code"}``
  (see Zoho's "Kaizen #4 - Troubleshooting OAuth2.0" post); ``token_error_status`` changes the
  status for a stricter imitation.
* The refresh grant's response has no ``refresh_token``: the original one stays valid.
* Seed bodies are reproduced field for field; where the seed is silent (the 401 bodies, the
  revoke answer, bad parameter formats, what is posted to the click-to-call URL) the choice
  is the plausible one and says so in a comment.
"""

from __future__ import annotations

import json
import re
from copy import deepcopy
from datetime import datetime
from typing import Any, ClassVar

import requests

from integrations.sandbox.base import (
    SandboxRequest,
    SandboxResponse,
    SandboxServer,
    empty_response,
    html_response,
    json_response,
    new_id,
    phones_match,
    redirect_response,
    require_loopback_url,
    route,
)
from integrations.sandbox.oauth import (
    OAuthAuthority,
    OAuthError,
    add_query,
    consent_decision,
    consent_page,
)

PHONEBRIDGE = "/crm/v2/phonebridge"

DEFAULT_CLIENT_ID = "1000.SANDBOXZOHOCLIENTID0000000000"
DEFAULT_CLIENT_SECRET = "sandbox-zoho-client-secret"

#: Active CRM users, as ``GET /crm/v2/phonebridge/users`` lists them.
SEED_USERS: list[dict[str, str]] = [
    {"userid": "4150868000000225013", "username": "Alice Admin", "email": "alice@zoho.example"},
    {"userid": "4150868000000225021", "username": "Bob Sales", "email": "bob@zoho.example"},
    {"userid": "4150868000000225037", "username": "Carol Support", "email": "carol@zoho.example"},
]

#: Leads, Contacts and Accounts with phone numbers stored in the varied formats people type.
#: ``Url`` is filled in with the server's address when served.
SEED_RECORDS: list[dict[str, Any]] = [
    {
        "Name": "Jane Doe",
        "Module": "Contacts",
        "Id": "4150868000000301001",
        "Company/Account": "Acme Corp",
        "Email": "jane.doe@acme.example",
        "Phone": "+1 (415) 555-0100",
        "Mobile": "415.555.0101",
        "Department": "Purchasing",
        "Potential": [
            {
                "Name": "Acme renewal",
                "Id": "4150868000000401001",
                "PotentialOwner": "Bob Sales",
                "ClosingDate": "2025-12-31",
                "ExpectedRevenue": "12000",
                "Stage": "Negotiation/Review",
                "Probability": "75",
            }
        ],
    },
    {
        "Name": "Luis Lead",
        "Module": "Leads",
        "Id": "4150868000000302001",
        "Company/Account": "Initech",
        "Email": "luis@initech.example",
        "Phone": "(415) 555-0142",
        "Mobile": "",
        "Department": "",
    },
    {
        "Name": "Globex",
        "Module": "Accounts",
        "Id": "4150868000000303001",
        "Company/Account": "Globex",
        "Email": "info@globex.example",
        "Phone": "001 212 555 0199",
        "Mobile": "",
        "Department": "",
    },
    {
        "Name": "Ana Sousa",
        "Module": "Contacts",
        "Id": "4150868000000301002",
        "Company/Account": "Umbrella Ltd",
        "Email": "ana@umbrella.example",
        "Phone": "+44 20 7946 0958",
        "Mobile": "",
        "Department": "Operations",
    },
    # Two contacts sharing one number: caller lookup must return both.
    {
        "Name": "Sam Twin",
        "Module": "Contacts",
        "Id": "4150868000000301003",
        "Company/Account": "Twins LLC",
        "Email": "sam@twins.example",
        "Phone": "415-555-0177",
        "Mobile": "",
        "Department": "",
    },
    {
        "Name": "Sally Twin",
        "Module": "Contacts",
        "Id": "4150868000000301004",
        "Company/Account": "Twins LLC",
        "Email": "sally@twins.example",
        "Phone": "4155550177",
        "Mobile": "",
        "Department": "",
    },
]

CUSTOMER_STATUSES = frozenset(
    {"success", "inprogress", "notavailable", "rejected", "noanswer", "busy", "blocked", "invalid"}
)
AGENT_STATUSES = frozenset(
    {
        "success",
        "notavailable",
        "rejected",
        "noanswer",
        "busy",
        "internationaldisabled",
        "notenoughfunds",
        "blocked",
    }
)
CALL_CONTROL_URLS = (
    "answerurl",
    "hungupurl",
    "muteurl",
    "unmuteurl",
    "holdurl",
    "unholdurl",
    "keypressurl",
)
ZOHO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


def zoho_error(
    message: str, code: str, status: int, details: dict[str, Any] | None = None
) -> SandboxResponse:
    """A PhoneBridge error body as the seed shows them."""
    return json_response(
        {"message": message, "status": "error", "details": details or {}, "code": code}, status
    )


def zoho_success(message: str | None = None) -> SandboxResponse:
    """A PhoneBridge success body as the seed shows them."""
    body: dict[str, Any] = {"status": "success", "code": "SUCCESS"}
    if message is not None:
        body = {"message": message, **body}
    return json_response(body)


class ZohoPhoneBridgeSandbox(SandboxServer):
    """Zoho Accounts OAuth + Zoho CRM PhoneBridge, with seeded users and records.

    Tunables (``configure(...)``, restored by ``reset()``):
        token_lifetime: seconds an access token lives (Zoho: 3600).
        auto_approve: ``GET /oauth/v2/auth`` redirects at once instead of showing the page.
        integrated_at_start: whether ``/phonebridge/integrate`` is already done after reset.
        license_allows_pbx: False makes every PhoneBridge call answer 403 NO_PERMISSION.
        other_pbx_enabled: another vendor's PBX holds the account, so ``POST /integrate``
            answers 403 DIFFERENT_PBX_ALREADY_ENABLED (and ours stays not integrated).
        pbx_registered: False: our PBX has no PhoneBridge registration, so ``/integrate``,
            ``/clicktocallandcallcontrol`` and ``/users`` answer 400 PBX_NOT_REGISTERED.
        user_privileged: False: the token's user may not set up PhoneBridge, so ``/integrate``,
            ``POST /clicktocallandcallcontrol`` and ``/users`` answer 403 (seed bodies).
        token_error_status: HTTP status of token-endpoint errors (Zoho: 200).
        pbx_name: the vendor name used in messages.
    """

    name: ClassVar[str] = "zoho"
    description: ClassVar[str] = "Zoho CRM PhoneBridge API + Zoho Accounts OAuth 2.0"
    tunables: ClassVar[tuple[str, ...]] = (
        "token_lifetime",
        "auto_approve",
        "integrated_at_start",
        "license_allows_pbx",
        "other_pbx_enabled",
        "pbx_registered",
        "user_privileged",
        "token_error_status",
        "pbx_name",
    )

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        verbose: bool = False,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        token_lifetime: int = 3600,
        auto_approve: bool = False,
        integrated_at_start: bool = False,
    ) -> None:
        """See the class docstring for the tunables; ``client_id``/``client_secret`` are fixed."""
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_lifetime = token_lifetime
        self.auto_approve = auto_approve
        self.integrated_at_start = integrated_at_start
        self.license_allows_pbx = True
        self.other_pbx_enabled = False
        self.pbx_registered = True
        self.user_privileged = True
        self.token_error_status = 200
        self.pbx_name = "Patchbay"
        super().__init__(host=host, port=port, verbose=verbose)

    # -- state ---------------------------------------------------------------------------

    def reset_state(self) -> None:
        """Reseed users and records; forget tokens, integration, call events and activities."""
        self.oauth = OAuthAuthority(
            client_id=self.client_id,
            client_secret=self.client_secret,
            clock=self.now,
            token_lifetime=lambda: self.token_lifetime,
            token_prefix="1000.",
        )
        self.users: list[dict[str, str]] = deepcopy(SEED_USERS)
        self.records: list[dict[str, Any]] = deepcopy(SEED_RECORDS)
        self.integrated: bool = bool(self.integrated_at_start)
        self.call_control: dict[str, Any] | None = None
        #: Every call event received, in order: {"event", "callrefid", "params", "time"}.
        self.events: list[dict[str, Any]] = []
        #: Call activities Zoho would create (one per callhungup/callmissed received).
        self.call_activities: list[dict[str, Any]] = []
        #: voiceurl updates received: {"callrefid", "voiceurl"}.
        self.voice_urls: list[dict[str, str]] = []

    def state(self) -> dict[str, Any]:
        """Integration flag, call-control registration, events, activities, voice URLs."""
        return {
            "integrated": self.integrated,
            "call_control": self.call_control,
            "events": self.events,
            "call_activities": self.call_activities,
            "voice_urls": self.voice_urls,
            "users": self.users,
            "records": [self._public_record(r) for r in self.records],
        }

    def activities_for(self, callrefid: str) -> list[dict[str, Any]]:
        """The call activities created for one ``callrefid`` (a test expects exactly one)."""
        with self.lock:
            return [a for a in self.call_activities if a["callrefid"] == callrefid]

    def events_for(self, callrefid: str) -> list[dict[str, Any]]:
        """The call events received for one ``callrefid``, in order."""
        with self.lock:
            return [e for e in self.events if e["callrefid"] == callrefid]

    def issue_tokens(self) -> dict[str, Any]:
        """A token pair without the browser flow, as the token endpoint would return it."""
        access, refresh = self.oauth.issue_directly(
            "PhoneBridge.call.ALL,PhoneBridge.zohoone.search"
        )
        return self._token_body(access.token, refresh.token, access.scope)

    def expire_tokens(self) -> None:
        """Expire every access token now (refresh tokens keep working)."""
        self.oauth.expire_all()

    def failure_body(self, status: int) -> Any:
        """Injected failures use the seed's error shape."""
        if status >= 500:
            return {
                "message": "Internal server error",
                "status": "error",
                "details": {},
                "code": "INTERNAL_ERROR",
            }
        return {"message": "injected failure", "status": "error", "details": {}, "code": "INJECTED"}

    def not_found(self, request: SandboxRequest) -> SandboxResponse:
        """Zoho's answer for an unknown URL (plausible; the seed only says "Invalid request")."""
        return zoho_error("the requested url is invalid", "INVALID_URL_PATTERN", 404)

    # -- OAuth: Zoho Accounts --------------------------------------------------------------

    def _token_error(self, error: str) -> SandboxResponse:
        return json_response({"error": error}, self.token_error_status)

    def _token_body(
        self, access_token: str, refresh_token: str | None, scope: str = ""
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"access_token": access_token}
        if refresh_token is not None:
            body["refresh_token"] = refresh_token
        body.update(
            {
                "scope": scope,
                "api_domain": self.url,
                "token_type": "Bearer",
                "expires_in": int(self.token_lifetime),
            }
        )
        return body

    @route("GET", "/oauth/v2/auth")
    def oauth_authorize(self, request: SandboxRequest) -> SandboxResponse:
        """The consent page (or, with ``auto_approve``, the redirect with a code)."""
        args = request.args()
        try:
            self.oauth.check_client(args.get("client_id"))
            redirect_uri = self.oauth.check_redirect_uri(args.get("redirect_uri"))
        except OAuthError as error:
            # Zoho shows an error page rather than redirecting to an unverified URI.
            return html_response(
                f"<!doctype html><title>Error</title><h1>Invalid request</h1>"
                f"<p id='error'>{error.error}: {error.description}</p>",
                400,
            )
        if args.get("response_type") != "code":
            return html_response(
                "<!doctype html><title>Error</title><p id='error'>response_type must be code</p>",
                400,
            )
        fields = {
            "client_id": args["client_id"],
            "redirect_uri": redirect_uri,
            "state": args.get("state", ""),
            "scope": args.get("scope", ""),
            "access_type": args.get("access_type", "online"),
        }
        if self.auto_approve:
            return self._approve(fields)
        return html_response(
            consent_page(
                title="Zoho Accounts (sandbox)",
                app_name=self.pbx_name,
                scope=fields["scope"],
                action="/oauth/v2/auth/approve",
                fields=fields,
            )
        )

    def _approve(self, fields: dict[str, str]) -> SandboxResponse:
        code = self.oauth.issue_code(fields["client_id"], fields["redirect_uri"], fields["scope"])
        params = {"code": code}
        if fields.get("state"):
            params["state"] = fields["state"]
        # Zoho adds the data centre of the user so the client calls the right token server.
        params["location"] = "us"
        params["accounts-server"] = self.url
        return redirect_response(add_query(fields["redirect_uri"], params))

    @route("POST", "/oauth/v2/auth/approve")
    def oauth_approve(self, request: SandboxRequest) -> SandboxResponse:
        """The consent form's target: redirect with a code (Accept) or an error (Deny)."""
        return consent_decision(self.oauth, request.args(), self._approve)

    @route("POST", "/oauth/v2/token")
    def oauth_token(self, request: SandboxRequest) -> SandboxResponse:
        """Both grants; Zoho reads the parameters from the query string or the form body."""
        args = request.args()
        grant_type = args.get("grant_type")
        try:
            if grant_type == "authorization_code":
                access, refresh = self.oauth.exchange_code(
                    code=args.get("code"),
                    client_id=args.get("client_id"),
                    client_secret=args.get("client_secret"),
                    redirect_uri=args.get("redirect_uri"),
                )
                return json_response(self._token_body(access.token, refresh.token, access.scope))
            if grant_type == "refresh_token":
                access = self.oauth.refresh(
                    refresh_token=args.get("refresh_token"),
                    client_id=args.get("client_id"),
                    client_secret=args.get("client_secret"),
                )
                return json_response(self._token_body(access.token, None, access.scope))
        except OAuthError as error:
            return self._token_error(error.error)
        return self._token_error("unsupported_grant_type")

    @route("POST", "/oauth/v2/token/revoke")
    def oauth_revoke(self, request: SandboxRequest) -> SandboxResponse:
        """Revoke a refresh token (and its access tokens). Answer shape is plausible."""
        token = request.arg("token")
        if not token or not self.oauth.revoke(token):
            return self._token_error("invalid_token")
        return json_response({"status": "success"})

    # -- PhoneBridge plumbing --------------------------------------------------------------

    def _authenticate(self, request: SandboxRequest) -> SandboxResponse | None:
        """None when the request carries a live token; the 401 to answer otherwise.

        The seed lists "401 Invalid authtoken provided" without a body; these are the bodies
        Zoho CRM v2 returns for a missing header and for an invalid or expired token.
        """
        header = request.header("Authorization") or ""
        scheme, _, token = header.partition(" ")
        if not header:
            return zoho_error("Authentication failed", "AUTHENTICATION_FAILURE", 401)
        if scheme != "Zoho-oauthtoken":
            return zoho_error("invalid oauth token", "INVALID_TOKEN", 401)
        found, _reason = self.oauth.check_access(token.strip())
        if found is None:
            return zoho_error("invalid oauth token", "INVALID_TOKEN", 401)
        if not self.license_allows_pbx:
            return zoho_error(
                "PBX Integration is not available for your license type", "NO_PERMISSION", 403
            )
        return None

    def _vendor_refusal(
        self, privilege_message: str, privilege_code: str
    ) -> SandboxResponse | None:
        """None when our PBX is registered and the user may set it up; the seed's error if not.

        The seed documents PBX_NOT_REGISTERED and the privilege 403 on ``/integrate``,
        ``/clicktocallandcallcontrol`` and ``/users`` only, with a different body for each
        (on ``/integrate`` the privilege error's code is INTERNAL_ERROR, as the seed shows).
        """
        if not self.pbx_registered:
            return self._not_registered()
        if not self.user_privileged:
            return zoho_error(privilege_message, privilege_code, 403)
        return None

    def _not_registered(self) -> SandboxResponse:
        return zoho_error(f"{self.pbx_name} is not registered", "PBX_NOT_REGISTERED", 400)

    def _not_integrated(self) -> SandboxResponse:
        return zoho_error(f"{self.pbx_name} Integration is not enabled", "PBX_NOT_INTEGRATED", 400)

    @staticmethod
    def _missing(request: SandboxRequest, *names: str) -> SandboxResponse | None:
        args = request.args()
        for name in names:
            if not args.get(name):
                return zoho_error(
                    "One of the expected parameters is missing",
                    "REQUIRED_PARAM_MISSING",
                    400,
                    {"param": name},
                )
        return None

    @staticmethod
    def _invalid(param: str, why: str) -> SandboxResponse:
        # The seed documents no format errors; INVALID_DATA is Zoho CRM's general code for them.
        return zoho_error(f"invalid data: {why}", "INVALID_DATA", 400, {"param": param})

    def _public_record(self, record: dict[str, Any]) -> dict[str, Any]:
        public = deepcopy(record)
        public["Url"] = f"{self.url}/crm/tab/{record['Module']}/{record['Id']}"
        for potential in public.get("Potential", []):
            potential["Url"] = f"{self.url}/crm/tab/Potentials/{potential['Id']}"
        return public

    def find_records(self, *numbers: str) -> list[dict[str, Any]]:
        """Records whose Phone or Mobile matches any number (digits compared, see phones_match)."""
        found = []
        for record in self.records:
            stored = [record.get("Phone") or "", record.get("Mobile") or ""]
            if any(phones_match(s, n) for s in stored if s for n in numbers if n):
                found.append(self._public_record(record))
        return found

    def _entity_answer(self, records: list[dict[str, Any]], full: bool) -> SandboxResponse:
        # The seed shows bodies for matches only; for an unknown number we answer as
        # callerdetails does (204 No Content), the plausible reading.
        if not records:
            return empty_response(204)
        if full:
            return json_response({"data": records})
        return json_response(
            {"data": [{"Name": r["Name"], "Id": r["Id"], "Module": r["Module"]} for r in records]}
        )

    def _record_event(self, event: str, request: SandboxRequest) -> dict[str, Any]:
        entry = {
            "event": event,
            "callrefid": request.arg("callrefid"),
            "params": request.args(),
            "time": self.now(),
        }
        with self.lock:
            self.events.append(entry)
        return entry

    def _create_activity(self, event: str, request: SandboxRequest, direction: str) -> None:
        args = request.args()
        entity = self.find_records(args.get("fromnumber", ""), args.get("tonumber", ""))
        with self.lock:
            self.call_activities.append(
                {
                    "id": new_id("call_"),
                    "callrefid": args.get("callrefid"),
                    "event": event,
                    "direction": direction,
                    "fromnumber": args.get("fromnumber"),
                    "tonumber": args.get("tonumber"),
                    "userid": args.get("userid"),
                    "callstarttime": args.get("callstarttime") or args.get("callmissedtime"),
                    "duration": args.get("duration"),
                    "voiceurl": args.get("voiceurl") or args.get("voicemailurl"),
                    "desc": args.get("desc"),
                    "entity": [{"Id": r["Id"], "Module": r["Module"]} for r in entity],
                }
            )

    # -- PhoneBridge endpoints -------------------------------------------------------------

    @route("POST", PHONEBRIDGE + "/integrate")
    def integrate(self, request: SandboxRequest) -> SandboxResponse:
        """Enable the PBX integration for the account (403 PBX_ALREADY_ENABLED twice).

        403 DIFFERENT_PBX_ALREADY_ENABLED while another vendor's PBX holds the account.
        """
        if (denied := self._authenticate(request)) is not None:
            return denied
        refused = self._vendor_refusal(
            "Requested user doesn't have enough privilege in Zoho CRM to enable PhoneBridge "
            "integration",
            "INTERNAL_ERROR",
        )
        if refused is not None:
            return refused
        with self.lock:
            if self.integrated:
                return zoho_error(
                    f"{self.pbx_name} has been already enabled for the Account",
                    "PBX_ALREADY_ENABLED",
                    403,
                )
            if self.other_pbx_enabled:
                return zoho_error(
                    "Different PBX has been enabled for the Account",
                    "DIFFERENT_PBX_ALREADY_ENABLED",
                    403,
                )
            self.integrated = True
        return zoho_success(f"{self.pbx_name} Integration is successful")

    @route("DELETE", PHONEBRIDGE + "/integrate")
    def unintegrate(self, request: SandboxRequest) -> SandboxResponse:
        """Disable the integration; also drops the click-to-call registration."""
        if (denied := self._authenticate(request)) is not None:
            return denied
        if not self.pbx_registered:
            return self._not_registered()
        with self.lock:
            if not self.integrated:
                # Not in the seed; PBX_NOT_INTEGRATED is the error it uses for this state.
                return self._not_integrated()
            self.integrated = False
            self.call_control = None
        return zoho_success(f"{self.pbx_name}Integration has been successfully removed")

    @route("POST", PHONEBRIDGE + "/clicktocallandcallcontrol")
    def call_control_enable(self, request: SandboxRequest) -> SandboxResponse:
        """Register the click-to-call URL (required), call-control URLs and custom params."""
        if (denied := self._authenticate(request)) is not None:
            return denied
        refused = self._vendor_refusal(
            "Requested user doesn't have enough privilege to perform this process", "NO_PERMISSION"
        )
        if refused is not None:
            return refused
        if not self.integrated:
            return self._not_integrated()
        if (missing := self._missing(request, "clicktocallurl")) is not None:
            return missing
        args = request.args()
        for name in ("clicktocallurl", *CALL_CONTROL_URLS):
            value = args.get(name)
            if value and not re.match(r"^https?://", value):
                return self._invalid(name, f"{name} must be a URL")
        parsed: dict[str, Any] = {}
        for name in ("authorizationparam", "clicktocallparam", "callcontrolparam"):
            if args.get(name):
                try:
                    parsed[name] = json.loads(args[name])
                except ValueError:
                    return self._invalid(name, f"{name} must be JSON")
        userids = [u for u in (args.get("userid") or "").split(",") if u]
        known = {u["userid"] for u in self.users}
        for userid in userids:
            if userid not in known:
                return self._invalid("userid", f"unknown user {userid}")
        with self.lock:
            self.call_control = {
                "urls": {
                    name: args[name]
                    for name in ("clicktocallurl", *CALL_CONTROL_URLS)
                    if args.get(name)
                },
                "userids": userids,
                **parsed,
            }
        return zoho_success(
            f"{self.pbx_name} Call control notifications has been enabled for the account "
            "successfully"
        )

    @route("DELETE", PHONEBRIDGE + "/clicktocallandcallcontrol")
    def call_control_disable(self, request: SandboxRequest) -> SandboxResponse:
        """Drop the click-to-call and call-control registration."""
        if (denied := self._authenticate(request)) is not None:
            return denied
        if not self.pbx_registered:
            return self._not_registered()
        if not self.integrated:
            return self._not_integrated()
        with self.lock:
            self.call_control = None
        return zoho_success(
            f"{self.pbx_name} Call control notifications has been disabled for the account "
            "successfully"
        )

    @route("GET", PHONEBRIDGE + "/users")
    def users_list(self, request: SandboxRequest) -> SandboxResponse:
        """Active users; needs the integration enabled (400 PBX_NOT_INTEGRATED)."""
        if (denied := self._authenticate(request)) is not None:
            return denied
        refused = self._vendor_refusal(
            "Requested user doesn't have enough privilege to perform this process", "NO_PERMISSION"
        )
        if refused is not None:
            return refused
        if not self.integrated:
            return self._not_integrated()
        return json_response({"users": self.users})

    @route("GET", PHONEBRIDGE + "/callerdetails")
    def caller_details(self, request: SandboxRequest) -> SandboxResponse:
        """Records matching ``phonenumber`` (200) or 204 with an empty body."""
        if (denied := self._authenticate(request)) is not None:
            return denied
        if (missing := self._missing(request, "phonenumber")) is not None:
            return missing
        return self._entity_answer(self.find_records(request.arg("phonenumber") or ""), True)

    @route("POST", PHONEBRIDGE + "/callreceived")
    def call_received(self, request: SandboxRequest) -> SandboxResponse:
        """An inbound call rings: answers the caller's records for the screen pop."""
        if (denied := self._authenticate(request)) is not None:
            return denied
        if (missing := self._missing(request, "callrefid", "fromnumber", "tonumber")) is not None:
            return missing
        self._record_event("callreceived", request)
        return self._entity_answer(self.find_records(request.arg("fromnumber") or ""), True)

    @route("POST", PHONEBRIDGE + "/callanswered")
    def call_answered(self, request: SandboxRequest) -> SandboxResponse:
        """The agent answered."""
        if (denied := self._authenticate(request)) is not None:
            return denied
        if (missing := self._missing(request, "callrefid", "fromnumber", "tonumber")) is not None:
            return missing
        self._record_event("callanswered", request)
        args = request.args()
        return self._entity_answer(self.find_records(args["fromnumber"], args["tonumber"]), False)

    @route("POST", PHONEBRIDGE + "/callhungup")
    def call_hungup(self, request: SandboxRequest) -> SandboxResponse:
        """The call ended: Zoho logs a call activity (one per request received)."""
        if (denied := self._authenticate(request)) is not None:
            return denied
        required = ("callrefid", "fromnumber", "tonumber", "callstarttime", "direction", "duration")
        if (missing := self._missing(request, *required)) is not None:
            return missing
        args = request.args()
        if not ZOHO_TIME.match(args["callstarttime"]):
            return self._invalid("callstarttime", "expected yyyy-MM-dd HH:mm:ss (GMT)")
        if args["direction"] not in ("inbound", "outbound"):
            return self._invalid("direction", "expected inbound or outbound")
        if not args["duration"].isdigit():
            return self._invalid("duration", "expected whole seconds")
        self._record_event("callhungup", request)
        self._create_activity("callhungup", request, args["direction"])
        return self._entity_answer(self.find_records(args["fromnumber"], args["tonumber"]), False)

    @route("POST", PHONEBRIDGE + "/callmissed")
    def call_missed(self, request: SandboxRequest) -> SandboxResponse:
        """A missed call: logged as a call activity unless ``sequential=true``.

        The seed's wording on ``sequential`` is ambiguous; we read ``true`` as "more ringing
        follows (sequential hunting), do not log yet".
        """
        if (denied := self._authenticate(request)) is not None:
            return denied
        required = ("callrefid", "fromnumber", "tonumber", "callmissedtime")
        if (missing := self._missing(request, *required)) is not None:
            return missing
        args = request.args()
        if not ZOHO_TIME.match(args["callmissedtime"]):
            return self._invalid("callmissedtime", "expected yyyy-MM-dd HH:mm:ss (GMT)")
        self._record_event("callmissed", request)
        if (args.get("sequential") or "").lower() != "true":
            self._create_activity("callmissed", request, "inbound")
        return self._entity_answer(self.find_records(args["fromnumber"]), False)

    @route("POST", PHONEBRIDGE + "/calldialed")
    def call_dialed(self, request: SandboxRequest) -> SandboxResponse:
        """An outbound call rings: answers the callee's records."""
        if (denied := self._authenticate(request)) is not None:
            return denied
        required = ("callrefid", "fromnumber", "tonumber", "customerstatus")
        if (missing := self._missing(request, *required)) is not None:
            return missing
        args = request.args()
        if args["customerstatus"] not in CUSTOMER_STATUSES:
            return self._invalid("customerstatus", "not one of the documented statuses")
        if args.get("agentstatus") and args["agentstatus"] not in AGENT_STATUSES:
            return self._invalid("agentstatus", "not one of the documented statuses")
        self._record_event("calldialed", request)
        return self._entity_answer(self.find_records(args["tonumber"]), True)

    @route("POST", PHONEBRIDGE + "/voiceurl")
    def voice_url(self, request: SandboxRequest) -> SandboxResponse:
        """Attach a recording URL to a call logged earlier."""
        if (denied := self._authenticate(request)) is not None:
            return denied
        if (missing := self._missing(request, "callrefid", "voiceurl")) is not None:
            return missing
        args = request.args()
        if not re.match(r"^https?://", args["voiceurl"]):
            return self._invalid("voiceurl", "voiceurl must be a URL")
        with self.lock:
            self.voice_urls.append({"callrefid": args["callrefid"], "voiceurl": args["voiceurl"]})
            for activity in self.call_activities:
                if activity["callrefid"] == args["callrefid"]:
                    activity["voiceurl"] = args["voiceurl"]
        return zoho_success()

    # -- Zoho calling us -------------------------------------------------------------------

    def click_to_call(
        self,
        tonumber: str,
        userid: str | None = None,
        fromnumber: str | None = None,
        timeout: float = 10.0,
    ) -> requests.Response:
        """Do what Zoho does when a user clicks a number: POST to the registered clicktocallurl.

        The seed does not show this request. We send a form with ``fromnumber``, ``tonumber``
        and ``userid``, the ``clicktocallparam`` pairs as extra fields, and the
        ``authorizationparam`` pair both as a header and as a field.

        Raises:
            RuntimeError: no click-to-call URL is registered.
            ValueError: the registered URL is not on loopback.
        """
        return self._post_registered(
            "clicktocallurl",
            "clicktocallparam",
            timeout,
            {
                "fromnumber": fromnumber or "",
                "tonumber": tonumber,
                "userid": userid or (self.users[0]["userid"] if self.users else ""),
            },
        )

    def send_call_control(
        self,
        action: str,
        callrefid: str,
        userid: str | None = None,
        timeout: float = 10.0,
        **extra: str,
    ) -> requests.Response:
        """POST a call-control command (``answer``, ``hungup``, ``mute``, ``unmute``, ``hold``,
        ``unhold``, ``keypress``) to the URL registered for it. Shape as for click_to_call.

        Raises:
            RuntimeError: no URL is registered for the action.
        """
        fields = {"callrefid": callrefid, "userid": userid or "", **extra}
        return self._post_registered(f"{action}url", "callcontrolparam", timeout, fields)

    def _post_registered(
        self, url_name: str, param_name: str, timeout: float, fields: dict[str, str]
    ) -> requests.Response:
        with self.lock:
            registration = deepcopy(self.call_control)
        if not registration or url_name not in registration["urls"]:
            raise RuntimeError(f"no {url_name} registered with the Zoho sandbox")
        url = registration["urls"][url_name]
        require_loopback_url(url)
        data = dict(fields)
        for pair in registration.get(param_name) or []:
            data[str(pair.get("name"))] = str(pair.get("value"))
        headers = {"User-Agent": "ZohoCRM-PhoneBridge-Sandbox"}
        authorization = registration.get("authorizationparam")
        if isinstance(authorization, dict) and authorization.get("name"):
            headers[str(authorization["name"])] = str(authorization.get("value", ""))
            data[str(authorization["name"])] = str(authorization.get("value", ""))
        return requests.post(url, data=data, headers=headers, timeout=timeout)


def zoho_time(moment: datetime) -> str:
    """Format a UTC datetime the way PhoneBridge wants it: ``yyyy-MM-dd HH:mm:ss``."""
    return moment.strftime("%Y-%m-%d %H:%M:%S")
