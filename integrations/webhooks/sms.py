"""Inbound SMS provider webhooks: ``/services/<service_id>/a<account_id>`` (DESIGN 4.6, 4.9).

The URL is the one of the Ringotel SMS framework (seeds/ringotel-sms-json-framework.txt): one per
(integration, reseller account), shared by every organization of the account. A request is
handled in the order STYLE rule 8 asks for, and nothing is stored unless it is accepted:

1. **Resolve** the spec: `service_id` is the spec's `id` — the account's own custom spec of that
   id, else the built-in one. Unknown account or spec → 404.
2. **Read** the raw body (GET: the query), at most WEBHOOK_MAX_BODY_BYTES → 413 beyond.
3. **Authenticate** when the spec's `Webhook` declares a `signature`: the request must verify
   with the secret of one of the account's installations of the spec → 401 otherwise.
4. **Match** the body against the spec's models (`engine.webhooks.match_webhook`):
   unparseable, or a matched model missing a value it requires → 400 naming it; a well-formed
   request that no model describes → 200 ``{"status": "ignored"}``, recorded as ignored.
5. **Route**: a `message`/`mms` event by its `to` number, which must be an SMS number of the
   account → 404 ``{"message": "+1… is not an SMS number of this account"}`` otherwise; a
   `status` event by our `message_ref` or the provider's `messageid` (an unknown message is
   recorded as ignored, 200, so the provider stops retrying).
6. **Store** one inbox row (source ``sms``, event type ``message``/``mms``/``status``; the
   organization of the number or message; secrets redacted) and enqueue its processing on
   commit → 202 ``{"status": "accepted", "id": …}``; a duplicate (same provider `messageid`)
   → 200 ``{"status": "duplicate"}``. The handlers are in `integrations.messaging_tasks`.

Dedup: events that carry the provider's id are deduplicated by it; events without one (the
seed's message model has no id) are not deduplicated — two identical texts are two messages,
and losing one is worse than showing a provider's retry twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
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
from integrations.engine.http import redact
from integrations.engine.signatures import SignatureInvalid, verify_signature
from integrations.engine.spec import Spec
from integrations.engine.webhooks import InboundRequest, WebhookRejected, match_webhook
from integrations.inbox import inbox_dedup_key, inbox_event_store
from integrations.messaging import message_for_status, sms_number_for_inbound
from integrations.models import InboxEvent, Installation, IntegrationSpec
from integrations.selectors import spec_version_load
from integrations.webhooks.base import redacted_headers, redacted_query
from tenants.models import Account
from tenants.phones import phone_to_e164

logger = logging.getLogger(__name__)


class SmsWebhookError(Exception):
    """Ends the request with `status` and ``{"message": …, "errors": {…}}``."""

    def __init__(self, status: int, message: str, errors: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or {}


def _spec_for(service_id: str, account_id: int) -> tuple[IntegrationSpec, Spec]:
    if not Account.objects.filter(pk=account_id).exists():
        raise SmsWebhookError(404, f"Unknown account a{account_id}: check the webhook URL.")
    rows = list(
        IntegrationSpec.objects.filter(spec_id=service_id, spec_class=IntegrationSpec.SpecClass.SMS)
        .filter(Q(account_id=account_id) | Q(account__isnull=True))
        .order_by("account_id")  # NULLS LAST on both backends: the account's own spec first
    )
    rows.sort(key=lambda row: row.account_id is None)
    for row in rows:
        version = row.latest_approved()
        if version is None:
            continue
        try:
            return row, spec_version_load(version)
        except SpecError as exc:
            logger.error("SMS webhook %s: the spec does not load: %s", service_id, exc)
            raise SmsWebhookError(500, "The integration's spec is invalid.") from exc
    raise SmsWebhookError(
        404, f"No SMS integration {service_id!r} for account a{account_id}: check the webhook URL."
    )


def _installations(spec_row: IntegrationSpec, account_id: int) -> list[Installation]:
    return list(
        Installation.objects.filter(
            spec_version__spec=spec_row, organization__account_id=account_id
        )
        .exclude(status=Installation.Status.DISABLED)
        .select_related("organization")
        .order_by("pk")
    )


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

    def _authenticate(
        self,
        spec: Spec,
        installations: list[Installation],
        inbound: InboundRequest,
    ) -> set[int]:
        """The ids of the installations whose secret verifies the request (401 if none)."""
        if not installations:
            raise SmsWebhookError(
                401, "No organization of this account has this integration enabled."
            )
        verified: set[int] = set()
        last_error = "the request is not signed"
        for installation in installations:
            try:
                verify_signature(
                    spec.webhook_signature or {},
                    inbound,
                    values=installation_properties(installation),
                    var_char=spec.var_char,
                )
            except SignatureInvalid as exc:
                last_error = exc.message
                continue
            verified.add(installation.pk)
        if not verified:
            raise SmsWebhookError(401, f"Invalid signature: {last_error}.")
        return verified

    def _handle(self, request: HttpRequest, service_id: str, account_id: int) -> HttpResponse:
        spec_row, spec = _spec_for(service_id, account_id)
        installations = _installations(spec_row, account_id)
        body = self._read_body(request) if request.method == "POST" else b""
        query = {key: request.GET.getlist(key) for key in request.GET}
        headers = dict(request.headers.items())
        url = settings.PUBLIC_BASE_URL + request.get_full_path()
        inbound = InboundRequest(
            request.method or "POST", request.content_type or "", body, query, headers, url
        )
        verified: set[int] | None = None
        if spec.webhook_signature:
            verified = self._authenticate(spec, installations, inbound)
        regions = {i.organization.default_region for i in installations}
        region = regions.pop() if len(regions) == 1 else "US"
        try:
            match = match_webhook(
                spec,
                method=request.method or "POST",
                content_type=request.content_type or "",
                body=body,
                query=query,
                headers=headers,
                region=region,
                verify_signature=lambda _block, _request: None,  # done above, per installation
                url=url,
            )
        except SignatureInvalid as exc:  # pragma: no cover - verification is done above
            raise SmsWebhookError(401, f"Invalid signature: {exc.message}.") from exc
        except WebhookRejected as exc:
            field = _field_named(exc.message)
            raise SmsWebhookError(
                400, f"Invalid request: {exc.message}.", {field: [exc.message]}
            ) from None
        except SpecError as exc:
            logger.error("SMS webhook %s: spec problem: %s", service_id, exc)
            raise SmsWebhookError(500, "The integration's spec is invalid.") from exc

        secrets = _secret_values(installations, spec)
        text = redact(body.decode("utf-8", errors="replace"), secrets)
        common: dict[str, Any] = {
            "source": InboxEvent.Source.SMS,
            "body": text,
            "content_type": request.content_type or "",
            "query": redacted_query(request, secrets),
            "headers": redacted_headers(request, secrets),
        }
        digest = hashlib.sha256(body + request.get_full_path().encode()).hexdigest()
        if match is None:
            event, _created = inbox_event_store(
                event_type="unknown",
                dedup_key=inbox_dedup_key("ignored", spec_row.pk, account_id, digest, uuid.uuid4()),
                payload=_payload_dict(None, text),
                state=InboxEvent.State.IGNORED,
                last_error=f"No Webhook model of {service_id} describes this request.",
                **common,
            )
            return JsonResponse({"status": "ignored", "id": event.pk}, status=200)

        values = _jsonable(match.values)
        payload = _payload_dict(_jsonable(match.payload), text)
        if match.event_type == "status":
            return self._status(match, values, payload, spec_row, account_id, common)
        return self._message(match, values, payload, account_id, verified, common)

    def _message(
        self,
        match: Any,
        values: dict[str, Any],
        payload: dict[str, Any],
        account_id: int,
        verified: set[int] | None,
        common: dict[str, Any],
    ) -> HttpResponse:
        to = str(values.get("to") or "").strip()
        if not to:
            raise SmsWebhookError(
                400, "Invalid request: the message has no `to` number.", {"to": ["is missing"]}
            )
        try:
            to_number = phone_to_e164(to, region="US", field="to")
        except ValidationError:
            to_number = to
        sms_number = sms_number_for_inbound(account_id=account_id, to_number=to_number)
        if sms_number is None:
            raise SmsWebhookError(404, f"{to_number} is not an SMS number of this account")
        if verified is not None and sms_number.installation_id not in verified:
            raise SmsWebhookError(
                401,
                f"Invalid signature: it does not match the integration {to_number} is bound to.",
            )
        media = [values["url"]] if values.get("url") else []
        for key in ("media_urls", "urls"):
            extra = values.get(key)
            if isinstance(extra, list):
                media.extend(str(u) for u in extra if u)
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

    def _status(
        self,
        match: Any,
        values: dict[str, Any],
        payload: dict[str, Any],
        spec_row: IntegrationSpec,
        account_id: int,
        common: dict[str, Any],
    ) -> HttpResponse:
        messageid = str(values.get("messageid") or "")
        message_ref = str(values.get("message_ref") or "")
        message = message_for_status(
            spec=spec_row, account_id=account_id, messageid=messageid, message_ref=message_ref
        )
        status = str(values.get("status") or "")
        if message is None:
            event, _created = inbox_event_store(
                event_type="status",
                dedup_key=inbox_dedup_key("status-unknown", messageid, message_ref, uuid.uuid4()),
                payload=payload,
                normalized={"messageid": messageid, "message_ref": message_ref, "status": status},
                state=InboxEvent.State.IGNORED,
                last_error="No message of this account has this messageid/message_ref.",
                **common,
            )
            return JsonResponse({"status": "ignored", "id": event.pk}, status=200)
        normalized = {
            "message_id": message.pk,
            "messageid": messageid,
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
            payload=payload,
            normalized=normalized,
            correlation_key=message.message_ref,
            **common,
        )
        if not created:
            return JsonResponse({"status": "duplicate", "id": event.pk}, status=200)
        return JsonResponse({"status": "accepted", "id": event.pk}, status=202)


def _payload_dict(data: Any, text: str) -> dict[str, Any]:
    if isinstance(data, dict):
        return data
    if data is None:
        return {"raw": text[:10000]}
    return {"data": data}


def _field_named(message: str) -> str:
    """The field a rejection names ("… is missing $to$" → "to"), else "body"."""
    for token in message.replace(",", " ").split():
        if token.startswith("$") and token.endswith("$") and len(token) > 2:
            return token.strip("$")
        if token.startswith("{") and token.endswith("}") and len(token) > 2:
            return token.strip("{}")
    return "body"
