"""The executor: runs one spec method against the live API and returns mapped records.

`SpecClient` ties the pure parts together — `build_request` renders each step, the
authenticator adds credentials (refreshing once on a 401), the one HTTP door sends, and
`map_response` captures the values. It also implements what spans several requests:
steps (`then`, `fallback`, `merge`, `when`), `phone_formats` (each format tried in order until
one matches), and `recording_base64` (fetched lazily, only for a method that uses it).
`install` and `uninstall` run the spec's `Install` / `Uninstall` requests (their captures
become installation values).

Everything the portal owns is passed in: property values, installation values, the token
store, the refresh lock and the HTTP session.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from integrations.engine.auth import (
    Authenticator,
    OAuth2Authenticator,
    RefreshLock,
    TokenSet,
    TokenStore,
    authenticator_for,
    send_with_auth,
)
from integrations.engine.errors import IntegrationError, Problem, SpecError
from integrations.engine.http import (
    AttemptRecord,
    HttpSession,
    OutboundRequest,
    ResponseTooLarge,
)
from integrations.engine.mapping import is_list_map, map_response
from integrations.engine.request import (
    RenderedRequest,
    build_request,
    phone_variants,
    should_run,
)
from integrations.engine.spec import Spec
from integrations.engine.templating import UNSET, render_json

# Methods that return a list of records even when one matches (DESIGN 4.8).
LIST_METHODS = frozenset({"Users", "Contacts", "Accounts", "FindContact", "SearchContacts"})
# Keys that identify a record, in order of preference, for de-duplicating merged steps.
_ID_KEYS = ("contact_id", "user_id", "account_id", "activity_id", "messageid", "id")
# A recording inlined as base64 is capped: larger files must be uploaded as multipart.
RECORDING_BASE64_MAX_BYTES = 20_000_000


@dataclass
class CallResult:
    """What one method call produced.

    `records`: the mapped records (list methods) or the captured values as one record.
    `values`: every value captured by any step (a create method's `contact_id`, ...).
    `is_list`: the method returns a list (a list method's name, or its last step's
    response map has an "each" array); decided by the spec, not by which steps ran.
    `requests`: what was sent, for showing to a person (use `redacted_summary`).
    """

    method_name: str
    records: list[dict[str, Any]] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    is_list: bool = False
    requests: list[RenderedRequest] = field(default_factory=list)
    phone_used: str | None = None

    def first(self) -> dict[str, Any]:
        """The first record merged over the captured values, or {}."""
        if self.records:
            return {**self.values, **self.records[0]}
        return dict(self.values)

    def to_json(self) -> list[dict[str, Any]] | dict[str, Any]:
        """A list for list methods (even with one record), an object otherwise."""
        if self.is_list:
            return self.records
        return self.first()


def request_summary(request: RenderedRequest) -> dict[str, Any]:
    """A JSON-able description of a request with every secret redacted (for people)."""
    body: Any = None
    if request.json_body is not None:
        body = request.json_body
    elif request.form is not None:
        body = dict(request.form)
    elif request.multipart is not None:
        body = {
            part.name: (f"<file {part.filename or part.file}>" if part.file else part.value)
            for part in request.multipart
        }
    elif request.text_body is not None:
        body = request.text_body
    summary = {
        "method": request.http_method,
        "url": request.url,
        "query": [list(pair) for pair in request.query],
        "headers": {
            k: ("[redacted]" if k.lower() == "authorization" else v)
            for k, v in request.headers.items()
        },
        "content_type": request.content_type,
        "body": body,
    }
    return json.loads(request.redacted(json.dumps(summary, default=str)))


class SpecClient:
    """Runs the methods of one spec for one set of configured values.

    Args:
        spec: a loaded spec.
        properties: property values by property name (secrets included, in plaintext).
        installation_values: values captured at install time or from the OAuth token
            response (4.9), usable like properties.
        session: the HTTP door; by default a new `HttpSession` honouring
            `allow_private_networks` and reporting attempts to `on_attempt`.
        token_store, lock: where OAuth2/token credentials live and the lock that collapses
            concurrent refreshes (the portal passes database-backed ones).
        region: the organization's default region, for phone formats.
    """

    def __init__(
        self,
        spec: Spec,
        *,
        properties: Mapping[str, Any] | None = None,
        installation_values: Mapping[str, Any] | None = None,
        session: HttpSession | None = None,
        token_store: TokenStore | None = None,
        lock: RefreshLock | None = None,
        region: str = "US",
        allow_private_networks: bool = False,
        on_attempt: Callable[[AttemptRecord], None] | None = None,
        system_values: Mapping[str, Any] | None = None,
    ) -> None:
        self.spec = spec
        # A property left out takes its declared default (Zoho's accounts URL), as in the form.
        self.properties = {
            prop.name: prop.default for prop in spec.properties if prop.default is not None
        }
        self.properties.update(properties or {})
        self.installation_values = dict(installation_values or {})
        self.system_values = dict(system_values or {})
        self.region = region or "US"
        self.session = session or HttpSession(
            allow_private_networks=allow_private_networks, on_attempt=on_attempt
        )
        self.authenticator: Authenticator = authenticator_for(
            spec.authentication or None,
            render=self._render_auth_value,
            session=_token_response_masking(self.session, spec),
            store=token_store,
            lock=lock,
            run_method=self._run_token_method,
        )

    # ------------------------------------------------------------------ values

    def base_values(self) -> dict[str, Any]:
        """Properties, installation values, token-response captures and portal values."""
        values: dict[str, Any] = {
            "now": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self.region,
        }
        values.update(self.system_values)
        values.update(self.properties)
        values.update(self.installation_values)
        # While the authenticator is being built, its own block is rendered from the rest.
        authenticator = getattr(self, "authenticator", None)
        if authenticator is not None:
            values.update(authenticator.values())
        return values

    def _render_auth_value(self, template: Any) -> Any:
        value = render_json(template, self.base_values(), self.spec.var_char)
        return None if value is UNSET else value

    def _run_token_method(
        self, method: Mapping[str, Any], extra_values: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Send a token request/refresh method without authentication; its captures."""
        values = {**self.base_values(), **extra_values}
        request = build_request(self.spec, method, values, pointer="/authentication")
        response = self.session.send(request, method_name="authentication")
        if response.accepted_error:
            return {}
        mapped = map_response(
            self.spec,
            method,
            body=response.content,
            headers=response.headers,
            context=values,
            pointer="/authentication",
        )
        return mapped.first()

    # ------------------------------------------------------------------ OAuth2

    def _oauth2(self) -> OAuth2Authenticator:
        if not isinstance(self.authenticator, OAuth2Authenticator):
            raise SpecError(Problem("/authentication/type", "this spec does not use oauth2"))
        return self.authenticator

    def authorization_url(self, *, state: str, redirect_uri: str) -> str:
        """Where to send a person to grant access (oauth2 specs)."""
        return self._oauth2().authorization_url(state, redirect_uri)

    def exchange_code(self, *, code: str, redirect_uri: str) -> TokenSet:
        """Trade an authorization code for tokens; they are saved to the token store."""
        return self._oauth2().exchange_code(code, redirect_uri)

    # ------------------------------------------------------------------ calls

    def has_method(self, name: str) -> bool:
        return self.spec.has_method(name)

    def _steps(self, method_name: str) -> tuple[list[dict[str, Any]], bool]:
        if not self.spec.has_method(method_name):
            raise SpecError(Problem(f"/API/{method_name}", f"the spec has no {method_name} method"))
        method = self.spec.methods[method_name]
        return self.spec.steps(method_name), isinstance(method, list)

    def _values_for(
        self, params: Mapping[str, Any] | None, steps: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        values = self.base_values()
        values.update({k: v for k, v in (params or {}).items() if v is not None})
        if "recording_base64" not in values and self._needs_recording(steps):
            encoded = self._recording_base64(values)
            if encoded is not None:
                values["recording_base64"] = encoded
        values.update(self._token_values(steps or [], values))
        return values

    def _needs_recording(self, steps: list[dict[str, Any]] | None) -> bool:
        """Whether these steps use `recording_base64`, directly or through a variable.

        The recording is downloaded and encoded only for a method that sends it, not for
        every call of a spec that has one such method.
        """
        if steps is None:
            return self._uses("recording_base64")
        # Follow variables through each other: `rec = $recording_base64$`, `payload` from `$rec$`.
        names = {"recording_base64"}
        grew = True
        while grew:
            grew = False
            for variable, expression in self.spec.variables.items():
                if variable not in names and any(self._uses(n, expression) for n in names):
                    names.add(variable)
                    grew = True
        return any(self._uses(name, steps) for name in names)

    def _uses(self, name: str, template: Any = None) -> bool:
        marker = f"{{{name}}}" if self.spec.var_char == "{}" else f"${name}$"
        return marker in json.dumps(self.spec.raw if template is None else template)

    def _token_values(
        self, steps: list[dict[str, Any]], values: Mapping[str, Any]
    ) -> dict[str, str]:
        """The stored `access_token` / `refresh_token`, for steps that name them.

        Only a method that says `$refresh_token$` gets it (a Logout that revokes the token at
        the provider, RFC 7009); both are redacted wherever they appear (request.py).
        """
        wanted = [
            name
            for name in ("access_token", "refresh_token")
            if name not in values and self._uses(name, steps)
        ]
        store: TokenStore | None = getattr(self.authenticator, "store", None)
        tokens = store.load() if wanted and store is not None else None
        if tokens is None:
            return {}
        found = {"access_token": tokens.access_token, "refresh_token": tokens.refresh_token}
        return {name: found[name] for name in wanted if found[name]}

    def _recording_base64(self, values: Mapping[str, Any]) -> str | None:
        """Fetch the recording (a local file or a URL, through the guarded door) and encode it."""
        source = values.get("recording_file") or values.get("recording_url")
        if not source:
            return None
        source = str(source)
        if source.startswith(("http://", "https://")):
            capped = HttpSession(
                allow_private_networks=self.session.allow_private_networks,
                max_response_bytes=RECORDING_BASE64_MAX_BYTES,
            )
            try:
                response = capped.send(
                    OutboundRequest(http_method="GET", url=source, retry_safe=True),
                    method_name="recording",
                )
            except ResponseTooLarge as error:
                raise _recording_too_large(url=error.url) from None
            data = response.content
        else:
            with open(source, "rb") as handle:
                data = handle.read(RECORDING_BASE64_MAX_BYTES + 1)
            if len(data) > RECORDING_BASE64_MAX_BYTES:
                raise _recording_too_large()
        return base64.b64encode(data).decode()

    def call(self, method_name: str, params: Mapping[str, Any] | None = None) -> CallResult:
        """Run `method_name` with `params` (system values and declared parameters).

        With `phone_formats`, `$phone$` is tried in each format in order until a format
        returns a record. Raises SpecError for a spec or configuration mistake and
        IntegrationError when the third party fails.
        """
        steps, stepped = self._steps(method_name)
        values = self._values_for(params, steps)
        formats = steps[0].get("phone_formats")
        phone = values.get("phone")
        if formats and phone:
            result = CallResult(method_name=method_name)
            for variant in phone_variants(str(phone), list(formats), self.region):
                result = self._run(method_name, steps, stepped, {**values, "phone": variant})
                result.phone_used = variant
                if result.records:
                    return result
            return result
        return self._run(method_name, steps, stepped, values)

    def install(self, params: Mapping[str, Any] | None = None) -> CallResult:
        """Run the spec's `Install` requests in order (when an org enables the integration).

        Each request sees the captures of the ones before it, like steps; `values` of the
        result are what the portal stores as installation values. Raises as `call`.
        """
        return self._lifecycle("Install", self.spec.install, params)

    def uninstall(self, params: Mapping[str, Any] | None = None) -> CallResult:
        """Run the spec's `Uninstall` requests in order (when an org disables it)."""
        return self._lifecycle("Uninstall", self.spec.uninstall, params)

    def _lifecycle(
        self, name: str, methods: list[dict[str, Any]], params: Mapping[str, Any] | None
    ) -> CallResult:
        steps = list(methods)
        values = self._values_for(params, steps)
        return self._run(name, steps, True, values, pointer_base=f"/{name}")

    def _run(
        self,
        method_name: str,
        steps: list[dict[str, Any]],
        stepped: bool,
        values: dict[str, Any],
        *,
        pointer_base: str | None = None,
    ) -> CallResult:
        result = CallResult(
            method_name=method_name,
            is_list=method_name in LIST_METHODS
            or bool(steps and is_list_map(steps[-1].get("response_map"))),
        )
        context = dict(values)
        base = pointer_base if pointer_base is not None else f"/API/{method_name}"
        listed = False  # some step's response map returned records
        found = False  # some step returned a record or captured a value (4.9 "fallback")
        for index, step in enumerate(steps):
            pointer = base + (f"/{index}" if stepped else "")
            mode = step.get("mode", "then")
            if mode == "fallback" and found:
                continue
            if not should_run(self.spec, step, context, pointer=pointer):
                continue
            request = build_request(self.spec, step, context, pointer=pointer)
            result.requests.append(request)
            response = send_with_auth(
                self.session, request, method_name=method_name, authenticator=self.authenticator
            )
            if response.accepted_error:
                continue  # an error answer the step accepts (accept_errors): nothing to map
            mapped = map_response(
                self.spec,
                step,
                body=response.content,
                headers=response.headers,
                context=context,
                pointer=pointer,
            )
            result.values.update(mapped.values)
            context.update(mapped.values)
            # A single-object map ("[0]") finds by capturing, a list map by returning records.
            if mapped.records or any(v not in (None, "") for v in mapped.values.values()):
                found = True
            if mapped.is_list:
                listed = True
                if mode == "merge":
                    result.records = _dedupe([*result.records, *mapped.records])
                else:
                    result.records = list(mapped.records)
                if mapped.records:
                    # Later steps see the first record's values (find-then-create chains).
                    context.update(mapped.records[0])
        if not listed:
            result.records = [result.values] if result.values else []
        return result

    def dry_run(
        self, method_name: str, params: Mapping[str, Any] | None = None
    ) -> list[RenderedRequest]:
        """The requests `call` would send first (steps needing earlier captures are left out)."""
        steps, stepped = self._steps(method_name)
        values = self._values_for(params, steps)
        formats = steps[0].get("phone_formats")
        if formats and values.get("phone"):
            values["phone"] = phone_variants(str(values["phone"]), list(formats), self.region)[0]
        requests = []
        for index, step in enumerate(steps):
            pointer = f"/API/{method_name}" + (f"/{index}" if stepped else "")
            try:
                if not should_run(self.spec, step, values, pointer=pointer):
                    continue
                requests.append(build_request(self.spec, step, values, pointer=pointer))
            except SpecError:
                if index == 0:
                    raise
                break
        return requests


class _MaskedTokenResponses:
    """The HTTP door as the OAuth2 authenticator sees it: every request it sends (token
    exchange, refresh) is logged with the token response's fields that `token_response_map`
    keeps as `secret` parameters masked. Everything else is the wrapped session's."""

    def __init__(self, session: HttpSession, keys: frozenset[str]) -> None:
        self._session = session
        self._keys = keys

    def send(self, request: Any, **kwargs: Any) -> Any:
        keys = frozenset(getattr(request, "redact_response_keys", None) or ()) | self._keys
        return self._session.send(dataclasses.replace(request, redact_response_keys=keys), **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def _token_response_masking(session: HttpSession, spec: Spec) -> HttpSession:
    """`session`, wrapped when the token response carries a secret parameter."""
    keys = spec.secret_response_keys(spec.authentication.get("token_response_map"))
    if not keys:
        return session
    return cast(HttpSession, _MaskedTokenResponses(session, keys))


def _recording_too_large(url: str | None = None) -> IntegrationError:
    """The one message for a recording too large to inline, from a file or a URL."""
    cap = RECORDING_BASE64_MAX_BYTES
    size = f"{cap // 1_000_000} MB" if cap >= 1_000_000 else f"{cap} bytes"
    return IntegrationError(
        f"The recording is larger than {size} and cannot be sent inline; "
        "use a multipart upload in the spec.",
        method="recording",
        url=url,
        permanent=True,
    )


def _record_key(record: Mapping[str, Any]) -> Any:
    for key in _ID_KEYS:
        if record.get(key) not in (None, ""):
            return (key, str(record[key]))
    return json.dumps(record, sort_keys=True, default=str)


def _dedupe(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[Any] = set()
    unique = []
    for record in records:
        key = _record_key(record)
        if key not in seen:
            seen.add(key)
            unique.append(record)
    return unique
