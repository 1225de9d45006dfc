"""Inbound SMS provider webhooks: ``/services/<service_id>/a<account_id>`` (DESIGN 4.6, 4.9).

The URL is the one of the Ringotel SMS framework (seeds/ringotel-sms-json-framework.txt): one per
(integration, reseller account), shared by every organization of the account. A request is
handled in the order STYLE rule 8 asks for, and nothing is stored unless it is accepted:

1. **Resolve** the spec: `service_id` is the spec's `id` — the account's own custom spec of that
   id, else the built-in one. Unknown account or spec → 404. The request is read with the
   spec versions the account's installations are pinned to (newest first), one *group* per
   (version, organization region); approving a new version changes nothing for installations
   still on an older one. Without any installation, the latest approved version is used.
2. **Read** the raw body (GET: the query), at most WEBHOOK_MAX_BODY_BYTES → 413 beyond.
3. **Authenticate** per version whose `Webhook` declares a `signature`: the request must verify
   with the secret of one of its installations; the ids that verify form the *verified* set →
   401 when nothing verifies.
4. **Match** the body against each group's models (`engine.webhooks.match_webhook`, phone
   numbers read in the group's region): unparseable, a matched model missing a value it
   requires, a value of the wrong type, or a non-text message body → 400 whose `errors` name
   each offending field by its place in the request (``params.to``, ``MediaUrl0``); a
   well-formed request that no model describes → 200 ``{"status": "ignored"}``, recorded as
   ignored.
5. **Route**: a `message`/`mms` event by its `to` number, which must be an SMS number of the
   account bound to an installation of the group → 404 ``{"message": "+1… is not an SMS number
   of this account"}`` otherwise; a `status` event by our `message_ref` or the provider's
   `messageid` (an unknown message is recorded as ignored, 200, so the provider stops
   retrying). Either way the installation the event belongs to must be in the verified set of a
   signed version → 401 otherwise (one organization's secret cannot reach another's messages).
   An event routed to an installation of another group is left to that group, so each
   installation's events are read with its own version.
6. **Store** one inbox row (source ``sms``, event type ``message``/``mms``/``status``; the
   organization of the number or message; secrets redacted) and enqueue its processing on
   commit → 202 ``{"status": "accepted", "id": …}``; a duplicate (same provider `messageid`)
   → 200 ``{"status": "duplicate"}``. The handlers are in `integrations.messaging_tasks`.

When no group accepts the request, the answer is the first refusal (newest version first), else
an ignored unknown status, else an ignored undescribed event.

Dedup: events that carry the provider's id are deduplicated by it; events without one (the
seed's message model has no id) are not deduplicated — two identical texts are two messages,
and losing one is worse than showing a provider's retry twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from integrations.connections import installation_properties
from integrations.engine.errors import SpecError
from integrations.engine.expressions import DEFAULT_REGION
from integrations.engine.http import redact
from integrations.engine.signatures import SignatureInvalid, verify_signature
from integrations.engine.spec import Spec
from integrations.engine.templating import literal_text
from integrations.engine.webhooks import (
    InboundRequest,
    WebhookMatch,
    WebhookRejected,
    match_webhook,
    place_name,
    value_paths,
)
from integrations.inbox import inbox_dedup_key, inbox_event_store
from integrations.messaging import message_for_status, sms_number_for_inbound
from integrations.models import InboxEvent, Installation, IntegrationSpec, SpecVersion
from integrations.selectors import spec_version_load
from integrations.webhooks.base import redacted_headers, redacted_query
from tenants.models import Account, Organization
from tenants.phones import phone_to_e164

logger = logging.getLogger(__name__)

# Values that are the message itself: text, never a JSON object or list.
_TEXT_VALUES = ("content", "text", "url")
_NO_VALUE = object()


class SmsWebhookError(Exception):
    """Ends the request with `status` and ``{"message": …, "errors": {…}}``."""

    def __init__(self, status: int, message: str, errors: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or {}


@dataclass
class _Group:
    """The account's installations of one spec version whose organizations share a region:
    a request is read for them with that version and region."""

    version: SpecVersion
    spec: Spec
    region: str
    installations: list[Installation]
    # Installations the request is authentic for: those whose secret verifies it (signed
    # versions), or all of them (unsigned versions).
    verified: set[int] = field(default_factory=set)

    @property
    def ids(self) -> set[int]:
        return {installation.pk for installation in self.installations}


def _spec_for(service_id: str, account_id: int) -> tuple[IntegrationSpec, SpecVersion]:
    """The spec the URL names for the account, with its latest approved version."""
    if not Account.objects.filter(pk=account_id).exists():
        raise SmsWebhookError(404, f"Unknown account a{account_id}: check the webhook URL.")
    rows = list(
        IntegrationSpec.objects.filter(
            spec_id=service_id, spec_class=IntegrationSpec.SpecClass.SMS
        ).filter(Q(account_id=account_id) | Q(account__isnull=True))
    )
    # A built-in spec's id is reserved: it wins over an account's spec of the same id (one
    # uploaded before ids were reserved), so its installations' webhook URL keeps working.
    rows.sort(key=lambda row: row.account_id is not None)
    for row in rows:
        version = row.latest_approved()
        if version is not None:
            return row, version
    raise SmsWebhookError(
        404, f"No SMS integration {service_id!r} for account a{account_id}: check the webhook URL."
    )


def _installations(spec_row: IntegrationSpec, account_id: int) -> list[Installation]:
    return list(
        Installation.objects.filter(
            spec_version__spec=spec_row, organization__account_id=account_id
        )
        .exclude(status=Installation.Status.DISABLED)
        .select_related("organization", "spec_version")
        .order_by("pk")
    )


def _account_region(account_id: int) -> str:
    """The region of the account's organizations when they share one, else the default."""
    regions = set(
        Organization.objects.filter(account_id=account_id).values_list("default_region", flat=True)
    )
    return regions.pop() if len(regions) == 1 else DEFAULT_REGION


def _load(version: SpecVersion, service_id: str) -> Spec | None:
    try:
        return spec_version_load(version)
    except SpecError as exc:
        logger.error(
            "SMS webhook %s v%s: the spec does not load: %s", service_id, version.number, exc
        )
        return None


def _groups(
    service_id: str, latest: SpecVersion, installations: list[Installation], account_id: int
) -> list[_Group]:
    """One group per (version, region) of the installations, newest version first; the latest
    approved version in the account's region when there is no installation."""
    if not installations:
        spec = _load(latest, service_id)
        if spec is None:
            raise SmsWebhookError(500, "The integration's spec is invalid.")
        return [_Group(latest, spec, _account_region(account_id), [])]
    by_version: dict[int, list[Installation]] = {}
    versions: dict[int, SpecVersion] = {}
    for installation in installations:
        versions[installation.spec_version_id] = installation.spec_version
        by_version.setdefault(installation.spec_version_id, []).append(installation)
    groups: list[_Group] = []
    for version in sorted(versions.values(), key=lambda v: v.number, reverse=True):
        spec = _load(version, service_id)
        if spec is None:
            continue
        by_region: dict[str, list[Installation]] = {}
        for installation in by_version[version.pk]:
            region = installation.organization.default_region or DEFAULT_REGION
            by_region.setdefault(region, []).append(installation)
        groups.extend(
            _Group(version, spec, region, members) for region, members in sorted(by_region.items())
        )
    if not groups:
        raise SmsWebhookError(500, "The integration's spec is invalid.")
    return groups


def _secret_values(installations: list[Installation], spec: Spec) -> list[str]:
    secret_names = {p.name for p in spec.properties if p.type == "secret" or p.secret}
    values: list[str] = []
    for installation in installations:
        for name, value in (installation.secret_properties or {}).items():
            if name in secret_names and isinstance(value, str) and value:
                values.append(value)
    return values


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


@method_decorator(csrf_exempt, name="dispatch")
class SmsWebhookView(View):
    """``GET``/``POST /services/<service_id>/a<account_id>``; see the module docstring."""

    http_method_names = ["get", "post"]

    def get(self, request: HttpRequest, service_id: str, account_id: int) -> HttpResponse:
        return self.handle(request, service_id, int(account_id))

    def post(self, request: HttpRequest, service_id: str, account_id: int) -> HttpResponse:
        return self.handle(request, service_id, int(account_id))

    def handle(self, request: HttpRequest, service_id: str, account_id: int) -> HttpResponse:
        try:
            return self._handle(request, service_id, account_id)
        except SmsWebhookError as error:
            return JsonResponse(
                {"message": error.message, "errors": error.errors}, status=error.status
            )

    # -- steps --------------------------------------------------------------------------------

    def _read_body(self, request: HttpRequest) -> bytes:
        limit = int(settings.WEBHOOK_MAX_BODY_BYTES)
        declared = request.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise SmsWebhookError(413, f"Body too large: the limit is {limit} bytes.")
        chunks: list[bytes] = []
        size = 0
        while chunk := request.read(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise SmsWebhookError(413, f"Body too large: the limit is {limit} bytes.")
            chunks.append(chunk)
        return b"".join(chunks)

    def _authenticate(self, groups: list[_Group], inbound: InboundRequest) -> set[int]:
        """Fill each group's verified set; the ids of the installations the request is
        authentic for (401 when a signature is required and none verifies)."""
        last_error = "the request is not signed"
        signed_only = True
        for group in groups:
            if not group.spec.webhook_signature:
                group.verified = group.ids
                signed_only = False
                continue
            for installation in group.installations:
                try:
                    verify_signature(
                        group.spec.webhook_signature,
                        inbound,
                        values=installation_properties(installation),
                        var_char=group.spec.var_char,
                    )
                except SignatureInvalid as exc:
                    last_error = exc.message
                    continue
                group.verified.add(installation.pk)
        trusted = set().union(*(group.verified for group in groups))
        if signed_only and not trusted:
            if not any(group.installations for group in groups):
                raise SmsWebhookError(
                    401, "No organization of this account has this integration enabled."
                )
            raise SmsWebhookError(401, f"Invalid signature: {last_error}.")
        return trusted

    def _handle(self, request: HttpRequest, service_id: str, account_id: int) -> HttpResponse:
        spec_row, latest = _spec_for(service_id, account_id)
        installations = _installations(spec_row, account_id)
        groups = _groups(service_id, latest, installations, account_id)
        body = self._read_body(request) if request.method == "POST" else b""
        query = {key: request.GET.getlist(key) for key in request.GET}
        headers = dict(request.headers.items())
        url = settings.PUBLIC_BASE_URL + request.get_full_path()
        method = request.method or "POST"
        inbound = InboundRequest(method, request.content_type or "", body, query, headers, url)
        trusted = self._authenticate(groups, inbound)
        all_ids = {installation.pk for installation in installations}

        secrets: list[str] = []
        for group in groups:
            secrets.extend(_secret_values(group.installations, group.spec))
        text = redact(body.decode("utf-8", errors="replace"), secrets)
        common: dict[str, Any] = {
            "source": InboxEvent.Source.SMS,
            "body": text,
            "content_type": request.content_type or "",
            "query": redacted_query(request, secrets),
            "headers": redacted_headers(request, secrets),
        }

        refusal: SmsWebhookError | None = None
        unknown_status: tuple[WebhookMatch, str] | None = None
        for group in groups:
            if group.spec.webhook_signature and not group.verified:
                continue  # nothing in this group signed the request
            try:
                match = self._match(group, inbound, service_id)
                if match is None:
                    continue
                if match.event_type == "status":
                    target, why = self._status_target(match, spec_row, account_id)
                    if target is None:
                        unknown_status = unknown_status or (match, why)
                        continue
                    installation_id = target.installation_id
                else:
                    target = self._message_target(match, group, account_id)
                    installation_id = target.installation_id
                if installation_id in group.verified:
                    if match.event_type == "status":
                        return self._status(match, target, common)
                    return self._message(match, target, group, common)
                if installation_id in all_ids and installation_id not in trusted:
                    raise SmsWebhookError(
                        401,
                        "Invalid signature: it does not match the integration "
                        f"{_routed_to(match, target)} belongs to.",
                    )
                if installation_id not in all_ids:
                    if match.event_type == "status":
                        unknown_status = unknown_status or (
                            match,
                            "The message's integration is disabled in this account.",
                        )
                        continue
                    raise SmsWebhookError(
                        404,
                        f"{target.number} is not bound to the {service_id} integration in this "
                        "account: post to the webhook URL of the integration it is bound to.",
                    )
                # Bound to an installation of another group: read with that group's version.
            except SmsWebhookError as error:
                refusal = refusal or error
        if refusal is not None:
            raise refusal
        if unknown_status is not None:
            match, why = unknown_status
            return self._unknown_status(match, why, common)
        event, _created = inbox_event_store(
            event_type="unknown",
            dedup_key=inbox_dedup_key(
                "ignored",
                spec_row.pk,
                account_id,
                hashlib.sha256(body + request.get_full_path().encode()).hexdigest(),
                uuid.uuid4(),
            ),
            payload=_payload_dict(None, text),
            state=InboxEvent.State.IGNORED,
            last_error=f"No Webhook model of {service_id} describes this request.",
            **common,
        )
        return JsonResponse({"status": "ignored", "id": event.pk}, status=200)

    def _match(
        self, group: _Group, inbound: InboundRequest, service_id: str
    ) -> WebhookMatch | None:
        """The group's reading of the request; 400 naming each offending field."""
        try:
            match = match_webhook(
                group.spec,
                method=inbound.method,
                content_type=inbound.content_type,
                body=inbound.body,
                query=inbound.query,
                headers=inbound.headers,
                region=group.region,
                verify_signature=lambda _block, _request: None,  # done per installation
                url=inbound.url,
            )
        except SignatureInvalid as exc:  # pragma: no cover - verification is done above
            raise SmsWebhookError(401, f"Invalid signature: {exc.message}.") from exc
        except WebhookRejected as exc:
            raise _rejection(exc) from None
        except SpecError as exc:
            logger.error("SMS webhook %s: spec problem: %s", service_id, exc)
            raise SmsWebhookError(
                500,
                "The integration's spec cannot read this request; its author has been told.",
            ) from exc
        if match is not None:
            _require_text(group.spec, match)
        return match

    def _message_target(self, match: WebhookMatch, group: _Group, account_id: int) -> Any:
        """The SMS number of the account a message event is for (404 when there is none)."""
        to = str(match.values.get("to") or "").strip()
        if not to:
            raise SmsWebhookError(
                400,
                "Invalid request: the message has no `to` number; send the phone number the "
                "message was sent to.",
                {"to": ["is missing: send the phone number the message was sent to."]},
            )
        try:
            to_number = phone_to_e164(to, region=group.region, field="to")
        except ValidationError:
            to_number = to
        sms_number = sms_number_for_inbound(account_id=account_id, to_number=to_number)
        if sms_number is None:
            raise SmsWebhookError(404, f"{to_number} is not an SMS number of this account")
        return sms_number

    def _status_target(
        self, match: WebhookMatch, spec_row: IntegrationSpec, account_id: int
    ) -> tuple[Any, str]:
        """(the outbound message a status event is about or None, why it is unknown)."""
        message = message_for_status(
            spec=spec_row,
            account_id=account_id,
            messageid=str(match.values.get("messageid") or ""),
            message_ref=str(match.values.get("message_ref") or ""),
        )
        return message, "No message of this account has this messageid/message_ref."

    def _message(
        self, match: WebhookMatch, sms_number: Any, group: _Group, common: dict[str, Any]
    ) -> HttpResponse:
        values = _jsonable(match.values)
        payload = _payload_dict(_jsonable(match.payload), common["body"])
        media: list[str] = []
        candidates: list[Any] = [values.get("url")]
        for key in ("media_urls", "urls"):
            extra = values.get(key)
            if isinstance(extra, list):
                candidates.extend(extra)
        for candidate in candidates:
            # The first numbered attachment is often mapped twice ($url$ and $urls$).
            if candidate and str(candidate) not in media:
                media.append(str(candidate))
        content = values.get("content")
        if match.event_type == "mms" and values.get("text") is not None:
            if not media and isinstance(content, str) and content.startswith("http"):
                media = [content]
            content = values.get("text")
        elif content is None:
            content = values.get("text")
        normalized = {
            "sms_number_id": sms_number.pk,
            "installation_id": sms_number.installation_id,
            "from": values.get("from"),
            "to": sms_number.number,
            "content": content or "",
            "media_urls": media,
            "messageid": values.get("messageid") or "",
            "event_key": match.event_key,
            "users": list(sms_number.users.values_list("pk", flat=True)),
        }
        messageid = str(values.get("messageid") or "")
        dedup = (
            inbox_dedup_key(match.event_type, sms_number.installation_id, messageid)
            if messageid
            else inbox_dedup_key(match.event_type, uuid.uuid4())
        )
        event, created = inbox_event_store(
            event_type=match.event_type,
            dedup_key=dedup,
            organization=sms_number.organization,
            installation=sms_number.installation,
            payload=payload,
            normalized=normalized,
            correlation_key=f"{sms_number.number}:{normalized['from']}",
            **common,
        )
        if not created:
            return JsonResponse({"status": "duplicate", "id": event.pk}, status=200)
        return JsonResponse({"status": "accepted", "id": event.pk}, status=202)

    def _unknown_status(
        self, match: WebhookMatch, why: str, common: dict[str, Any]
    ) -> HttpResponse:
        values = _jsonable(match.values)
        messageid = str(values.get("messageid") or "")
        message_ref = str(values.get("message_ref") or "")
        event, _created = inbox_event_store(
            event_type="status",
            dedup_key=inbox_dedup_key("status-unknown", messageid, message_ref, uuid.uuid4()),
            payload=_payload_dict(_jsonable(match.payload), common["body"]),
            normalized={
                "messageid": messageid,
                "message_ref": message_ref,
                "status": str(values.get("status") or ""),
            },
            state=InboxEvent.State.IGNORED,
            last_error=why,
            **common,
        )
        return JsonResponse({"status": "ignored", "id": event.pk}, status=200)

    def _status(self, match: WebhookMatch, message: Any, common: dict[str, Any]) -> HttpResponse:
        values = _jsonable(match.values)
        status = str(values.get("status") or "")
        normalized = {
            "message_id": message.pk,
            "messageid": str(values.get("messageid") or ""),
            "message_ref": message.message_ref,
            "status": status,
            "provider_status": values.get("provider_status") or status,
            "error": str(values.get("error") or ""),
        }
        event, created = inbox_event_store(
            event_type="status",
            dedup_key=inbox_dedup_key("status", message.pk, normalized["provider_status"]),
            organization=message.organization,
            installation=message.installation,
            payload=_payload_dict(_jsonable(match.payload), common["body"]),
            normalized=normalized,
            correlation_key=message.message_ref,
            **common,
        )
        if not created:
            return JsonResponse({"status": "duplicate", "id": event.pk}, status=200)
        return JsonResponse({"status": "accepted", "id": event.pk}, status=202)


def _routed_to(match: WebhookMatch, target: Any) -> str:
    return "the message" if match.event_type == "status" else str(target.number)


def _payload_dict(data: Any, text: str) -> dict[str, Any]:
    if isinstance(data, dict):
        return data
    if data is None:
        return {"raw": text[:10000]}
    return {"data": data}


# -- naming the offending field --------------------------------------------------------------


def _lookup(data: Any, path: tuple[str, ...], var_char: str) -> Any:
    for key in path:
        if key.startswith("[") and key.endswith("]"):
            try:
                data = data[int(key[1:-1])] if isinstance(data, list) else _NO_VALUE
            except (ValueError, IndexError):
                return _NO_VALUE
        elif key.endswith("*"):
            return _NO_VALUE
        else:
            key = literal_text(key, var_char)
            data = data[key] if isinstance(data, dict) and key in data else _NO_VALUE
        if data is _NO_VALUE:
            return _NO_VALUE
    return data


def _require_text(spec: Spec, match: WebhookMatch) -> None:
    """400 when the message body (or its media URL) was sent as a JSON object or list: it
    would otherwise be stored as that object's text."""
    model = spec.webhooks[match.model_index]
    var_char = spec.var_char
    errors: dict[str, list[str]] = {}
    for name in _TEXT_VALUES:
        for path in value_paths(model.get("request_parameters"), name, var_char):
            raw = _lookup(match.payload, path, var_char)
            if isinstance(raw, dict | list | bool):
                kind = {dict: "a JSON object", list: "a list"}.get(type(raw), "true/false")
                errors[place_name(path, var_char)] = [f"must be text, not {kind}."]
    if errors:
        names = ", ".join(errors)
        raise SmsWebhookError(
            400, f"Invalid request: {names} must be text; send the message as a string.", errors
        )


def _rejection(rejected: WebhookRejected) -> SmsWebhookError:
    """The 400 for an engine rejection: the fields it names, with its advice to the sender."""
    errors = rejected.fields or {"body": [rejected.message]}
    return SmsWebhookError(400, f"Invalid request: {rejected.advice}", errors)
