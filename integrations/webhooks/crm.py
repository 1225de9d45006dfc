"""CRM click-to-call and call control: ``POST /api/v1/hooks/crm/<installation key>/<action>``.

Zoho PhoneBridge (seeds/zoho-phonebridge-api.txt, "Enable/disable clicktocall & call
control") calls the URLs we register at install — ``clicktocallurl`` when a CRM user clicks a
number, ``answerurl``, ``hungupurl``, ``muteurl``, ``unmuteurl``, ``holdurl``, ``unholdurl``,
``keypressurl`` for call control. The installation's spec registers them with the system values
``$clicktocall_url$`` (…/clicktocall) and ``$callcontrol_url$`` (…/answer, /hangup, /mute,
/unmute, /hold, /unhold, /keypress). Each accepted request becomes a `clicktocall` outbound
callback to the organization's PBX (DESIGN 7): the handler is in
`integrations.messaging_tasks`.

Authentication — the ``authorizationparam`` registered at install
-----------------------------------------------------------------
The credential is the one the installation's own ``Install`` requests registered: the first
``request_parameters.authorizationparam`` object (``{"name": …, "value": …}``) of the spec's
`Install` methods, rendered with the installation's values exactly as at install time
(properties — Zoho's spec uses its secret ``Callback Token`` property — captured values and
portal system values). The CRM presents it as the header of that name, or as a form/query field
of that name (Zoho's sandbox sends both); it is compared in constant time. When the spec has no
``authorizationparam`` (a CRM that registers none), the credential is derived from the
installation: header ``X-Patchbay-Token`` = hex HMAC-SHA256(SECRET_KEY, "crm-callback:" +
installation key) (`crm_callback_token`). An unknown key, a disabled installation, a missing or
wrong credential, or an ``authorizationparam`` whose value renders empty → 401, nothing stored.

Validation: ``clicktocall`` needs ``tonumber``; the call-control actions need ``callrefid``;
``keypress`` needs the key(s) in ``digits`` (or ``keypress``/``key``). Malformed → 400 naming the
field. Accepted → 200 ``{"status": "accepted", "id": <inbox event>}``.

The callback payload (JSON) the PBX receives::

    {"action": "clicktocall", "phone": "+14155550100", "to": "+14155550100", "from": "",
     "extension": "101", "pbx_user_id": 7, "crm_user_id": "4150868000000225013",
     "call_id": "", "digits": "", "installation": "<key>", "integration": "zoho-phonebridge",
     "params": {…the other fields Zoho sent (clicktocallparam/callcontrolparam)…}}

Its tokens: ``{action}``, ``{extension}``, ``{phone}``, ``{from}``, ``{to}``, ``{call_id}``,
``{digits}``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import uuid
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from integrations.connections import installation_connection, installation_spec
from integrations.engine.errors import SpecError
from integrations.engine.http import redact
from integrations.engine.request import prepare_context
from integrations.engine.templating import UNSET, render_json
from integrations.inbox import inbox_dedup_key, inbox_event_store
from integrations.models import InboxEvent, Installation, UserMapping
from integrations.webhooks.base import redacted_headers, redacted_query
from tenants.phones import phone_to_e164

logger = logging.getLogger(__name__)

CRM_ACTIONS: tuple[str, ...] = (
    "clicktocall",
    "answer",
    "hangup",
    "mute",
    "unmute",
    "hold",
    "unhold",
    "keypress",
)
DEFAULT_TOKEN_HEADER = "X-Patchbay-Token"
MAX_BODY_BYTES = 64 * 1024
# Fields of Zoho's requests that we map; the others travel in `params`.
KNOWN_FIELDS = frozenset({"fromnumber", "tonumber", "userid", "callrefid", "digits", "keypress"})


class CrmHookError(Exception):
    def __init__(self, status: int, message: str, errors: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or {}


def crm_callback_token(installation: Installation) -> str:
    """The credential derived from the installation, for specs that register none."""
    key = hashlib.sha256(("crm-callback:" + settings.SECRET_KEY).encode()).digest()
    return hmac.new(key, installation.key.encode(), "sha256").hexdigest()


def crm_callback_credential(installation: Installation) -> tuple[str, str]:
    """``(name, value)`` the CRM must present; value "" means none is configured (refuse).

    See the module docstring: the spec's registered ``authorizationparam`` rendered with the
    installation's values, else ``X-Patchbay-Token`` with `crm_callback_token`.
    """
    spec = installation_spec(installation)
    template: Any = None
    for method in spec.install:
        params = method.get("request_parameters") if isinstance(method, dict) else None
        if isinstance(params, dict) and isinstance(params.get("authorizationparam"), dict):
            template = params["authorizationparam"]
            break
    if template is None:
        return DEFAULT_TOKEN_HEADER, crm_callback_token(installation)
    client = installation_connection(installation).client
    try:
        context = prepare_context(spec, client.base_values())
        rendered = render_json(template, context, spec.var_char)
    except SpecError as exc:
        logger.warning("authorizationparam of %s does not render: %s", installation, exc)
        return DEFAULT_TOKEN_HEADER, ""
    if rendered is UNSET or not isinstance(rendered, dict):
        return DEFAULT_TOKEN_HEADER, ""
    name = str(rendered.get("name") or DEFAULT_TOKEN_HEADER)
    value = rendered.get("value")
    return name, "" if value in (None, "") or value is UNSET else str(value)


def _fields(request: HttpRequest, body: bytes) -> dict[str, str]:
    fields: dict[str, str] = {k: request.GET.get(k, "") for k in request.GET}
    media = (request.content_type or "").lower()
    if media == "application/json" and body.strip():
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise CrmHookError(
                400, f"Invalid body: not JSON ({exc}).", {"body": ["not JSON"]}
            ) from None
        if not isinstance(data, dict):
            raise CrmHookError(400, "Invalid body: expected a JSON object.", {"body": ["object"]})
        fields.update({str(k): "" if v is None else str(v) for k, v in data.items()})
    elif request.method == "POST":
        fields.update({k: request.POST.get(k, "") for k in request.POST})
    return fields


@method_decorator(csrf_exempt, name="dispatch")
class CrmHookView(View):
    """``POST /api/v1/hooks/crm/<installation_key>/<action>``; see the module docstring."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest, installation_key: str, action: str) -> HttpResponse:
        try:
            return self._post(request, installation_key, action)
        except CrmHookError as error:
            response = JsonResponse(
                {"message": error.message, "errors": error.errors}, status=error.status
            )
            if error.status == 401:
                response["WWW-Authenticate"] = (
                    f'Token realm="patchbay-crm", header="{DEFAULT_TOKEN_HEADER}"'
                )
            return response

    def _post(self, request: HttpRequest, installation_key: str, action: str) -> HttpResponse:
        if action not in CRM_ACTIONS:
            raise CrmHookError(404, f"Unknown action {action!r}; one of {', '.join(CRM_ACTIONS)}.")
        installation = (
            Installation.objects.select_related("organization", "spec_version__spec")
            .filter(key=installation_key)
            .first()
        )
        if installation is None or installation.status == Installation.Status.DISABLED:
            raise CrmHookError(401, "Unknown or disabled integration: check the URL.")
        name, expected = crm_callback_credential(installation)
        declared = request.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise CrmHookError(413, f"Body too large: the limit is {MAX_BODY_BYTES} bytes.")
        body = request.body if request.content_type == "application/json" else b""
        presented = request.headers.get(name)
        if presented is None:
            presented = request.POST.get(name) if request.method == "POST" else None
            if presented is None:
                presented = request.GET.get(name)
        if presented is None and body:
            try:
                presented = str((json.loads(body) or {}).get(name) or "") or None
            except (ValueError, AttributeError):
                presented = None
        if not expected:
            raise CrmHookError(
                401,
                "No callback credential is configured for this integration: set the property "
                "its authorizationparam uses (e.g. Callback Token) and reinstall.",
            )
        if presented is None:
            raise CrmHookError(401, f"Missing credentials: send the {name} registered at install.")
        if not hmac.compare_digest(presented.encode(), expected.encode()):
            raise CrmHookError(401, f"Wrong credentials: the {name} does not match.")

        fields = _fields(request, body)
        fields.pop(name, None)
        organization = installation.organization
        region = organization.default_region
        errors: dict[str, list[str]] = {}
        if action == "clicktocall" and not fields.get("tonumber"):
            errors["tonumber"] = ["is required: the number to call"]
        if action != "clicktocall" and not fields.get("callrefid"):
            errors["callrefid"] = ["is required: the call to control"]
        digits = fields.get("digits") or fields.get("keypress") or fields.get("key") or ""
        if action == "keypress" and not digits:
            errors["digits"] = ["is required: the key(s) pressed"]
        numbers: dict[str, str] = {}
        for field_name in ("tonumber", "fromnumber"):
            raw = fields.get(field_name, "")
            if not raw:
                numbers[field_name] = ""
                continue
            # Zoho writes international numbers with 00 (0018885554567).
            candidate = "+" + raw[2:] if raw.startswith("00") else raw
            try:
                numbers[field_name] = phone_to_e164(candidate, region=region, field=field_name)
            except ValidationError:
                if field_name == "tonumber":
                    errors[field_name] = [f"{raw!r} is not a phone number"]
                numbers[field_name] = raw
        if errors:
            first = next(iter(errors))
            raise CrmHookError(400, f"Invalid {first}: {errors[first][0]}.", errors)

        crm_user_id = fields.get("userid", "")
        mapping = (
            UserMapping.objects.filter(installation=installation, crm_user__external_id=crm_user_id)
            .select_related("pbx_user")
            .first()
            if crm_user_id
            else None
        )
        pbx_user = mapping.pbx_user if mapping else None
        payload = {
            "action": action,
            "phone": numbers["tonumber"],
            "to": numbers["tonumber"],
            "from": numbers["fromnumber"],
            "extension": pbx_user.extension if pbx_user else "",
            "pbx_user_id": pbx_user.pk if pbx_user else None,
            "crm_user_id": crm_user_id,
            "call_id": fields.get("callrefid", ""),
            "digits": digits,
            "installation": installation.key,
            "integration": installation.spec_version.spec.spec_id,
            "params": {k: v for k, v in fields.items() if k not in KNOWN_FIELDS},
        }
        tokens = {
            k: payload[k]
            for k in ("action", "extension", "phone", "from", "to", "call_id", "digits")
        }
        secrets = [expected]
        event, _created = inbox_event_store(
            source=InboxEvent.Source.CRM,
            event_type=action,
            # Zoho sends no request id and a user may click the same number twice: no dedup.
            dedup_key=inbox_dedup_key("crm", installation.pk, action, uuid.uuid4()),
            organization=organization,
            installation=installation,
            body=redact(body.decode("utf-8", "replace") or request.POST.urlencode(), secrets),
            payload={k: redact(v, secrets) for k, v in fields.items()},
            normalized={"payload": payload, "tokens": tokens},
            correlation_key=payload["call_id"],
            content_type=request.content_type or "",
            query=redacted_query(request, secrets),
            headers=redacted_headers(request, secrets),
        )
        return JsonResponse({"status": "accepted", "id": event.pk}, status=200)
