"""Outbound callbacks (DESIGN 7, modelled on RingRx callbacks): an organization subscribes URLs
to its events, and every matching event is POSTed there.

A `CallbackSubscription` has a type (`sms`, `voicemail`, `fax`, `cdr`, `recording`,
`call_alert`, `outreach`, `message_status`, `clicktocall`), a URL with ``{token}`` replacement,
optional Basic auth (never token-replaced), custom headers (one ``Name:value`` per line,
token-replaced), a signing secret and optional bindings (numbers, mailboxes, groups).

Sending an event (`callbacks_dispatch`) creates one `CallbackDelivery` per active matching
subscription and enqueues `callback_deliver_task` after commit. Each attempt (`callback_deliver`):

* renders the URL (token values percent-encoded: ``{`` ``&``, spaces and non-ASCII included)
  and the headers (a value containing CR or LF is refused: the delivery fails, naming it);
* POSTs the JSON payload — or, for voicemail and fax, the stored file as the body with its
  content type, as RingRx does — through the one HTTP door (`HttpSession`: timeouts, SSRF
  guard, redaction), signed in the Standard Webhooks form: ``webhook-id`` (the delivery's id,
  the same on every retry), ``webhook-timestamp``, ``webhook-signature`` (``v1,<base64
  HMAC-SHA256(key, "id.timestamp.body")>``; the key is the base64 after ``whsec_`` — secrets we
  generate look like that — else the secret's bytes), verifiable with the `standardwebhooks`
  library;
* logs the attempt in the delivery log (no installation; method ``callback:<type>``);
* on a transient failure (connection error, timeout, 5xx, 429) schedules the next attempt with
  exponential backoff and jitter (CALLBACK_RETRY_BASE_SECONDS … CALLBACK_RETRY_MAX_SECONDS; a
  Retry-After is honoured), up to CALLBACK_MAX_ATTEMPTS; other 4xx fail at once;
* counts failed attempts in a row on the subscription: at CALLBACK_MAX_CONSECUTIVE_FAILURES it is
  disabled, with `disabled_reason` and a `Notice` for the organization's admins. A success
  resets the count.

An admin sends a failed delivery again with `callback_delivery_retry` (the Retry button of the
callback's page, or the API): same ``webhook-id``, attempts reset; a delivery that failed while
its callback was disabled can be retried once the callback is enabled again.

The inbox handlers registered at the bottom fan PBX events out to the subscriptions of the same
type. Other code (message status, click-to-call) calls `callbacks_dispatch` directly.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import random
import re
import secrets
import time
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

import requests.auth
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Q, QuerySet
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone

from integrations.engine.errors import IntegrationError
from integrations.engine.http import AttemptRecord, HttpSession, OutboundRequest
from integrations.inbox import inbox_handler
from integrations.models import (
    CallbackDelivery,
    CallbackSubscription,
    DeliveryLogEntry,
    InboxEvent,
    Notice,
)
from integrations.ringrx_formats import ringrx_callback_sample, ringrx_tokens
from integrations.webhooks.base import standard_webhooks_key
from integrations.webhooks.pbx import phone_normalize
from tenants.models import Organization

logger = logging.getLogger(__name__)

CallbackType = CallbackSubscription.CallbackType
CALLBACK_TYPES: tuple[str, ...] = tuple(CallbackType.values)
# Types whose body is a file (the inbox event's stored file), not JSON.
FILE_CALLBACK_TYPES = frozenset({"voicemail", "fax"})
# PBX inbox event type → the callback type it is forwarded to.
PBX_EVENT_CALLBACK_TYPES: dict[str, str] = {
    "cdr": "cdr",
    "recording": "recording",
    "voicemail": "voicemail",
    "fax": "fax",
    "sms": "sms",
    "call_alert": "call_alert",
    "outreach": "outreach",
}
# What a subscription's bindings are compared with, per type (any token listed may match).
# RingRx binds sms callbacks to numbers, voicemail to mailboxes, fax to fax services (a mailbox
# or a number), call_alert to groups (the group's extension or number). cdr, recording and
# outreach are global here (the outreach payload does not name its profile).
BINDING_TOKENS: dict[str, tuple[str, ...]] = {
    "sms": ("to",),
    "voicemail": ("mailbox", "called"),
    "fax": ("mailbox", "called"),
    "call_alert": ("dialed_number", "originally_dialed_number"),
    "message_status": ("from", "to"),
    "clicktocall": ("extension", "from", "phone"),
}
UNBINDABLE_TYPES = frozenset({"cdr", "recording", "outreach"})
# The tokens each type's events carry (RingRx's token tables; ours for the last two).
TOKEN_TABLES: dict[str, tuple[str, ...]] = {
    "sms": ("from", "to", "message", "timestamp", "uuid"),
    "voicemail": ("id", "caller", "called", "duration", "filename", "mailbox", "created_at"),
    "fax": ("id", "caller", "called", "pages", "filename", "mailbox", "created_at"),
    "cdr": (
        "id",
        "domain_name",
        "aleg_uuid",
        "responsible_party",
        "start_time",
        "hangup_cause",
        "dialed_digits",
        "calling_party",
        "caller_id_number",
        "caller_id_name",
        "duration",
        "bill_duration",
        "direction",
        "mailbox",
        "aleg_holdtime",
        "bleg_holdtime",
        "tags",
    ),
    "recording": (),  # the cdr tokens, below
    "outreach": (
        "id",
        "name",
        "phonenumber",
        "email_address",
        "call_state",
        "sms_state",
        "email_state",
        "confirmed",
        "cancelled",
        "reminder_date",
        "attempt",
        "voice",
        "sms",
        "email",
        "event_log",
    ),
    "call_alert": (
        "uuid",
        "created_at",
        "callback_id",
        "domain_name",
        "originally_dialed_number",
        "dialed_number",
        "caller_number",
        "caller_name",
        "tags",
        "dialed_users",
    ),
    "message_status": ("messageid", "message_ref", "status", "from", "to"),
    "clicktocall": ("action", "extension", "phone", "from", "to", "call_id", "digits"),
}
TOKEN_TABLES["recording"] = (*TOKEN_TABLES["cdr"], "recording_url")

_TOKEN = re.compile(r"\{([^{}]*)\}")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_URL_START = re.compile(r"^https?://[^\s/{}?#@]+(?:[/?#]|$)", re.IGNORECASE)
RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
)
MAX_BINDINGS = 200


class CallbackConfigError(ValueError):
    """A callback cannot be rendered (a header value with a line break, a file gone). The
    delivery fails at once with this message; retrying cannot help."""


# --- Token replacement -------------------------------------------------------------------------


def _token_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def callback_tokens_render(template: str, tokens: Mapping[str, Any], *, url: bool = False) -> str:
    """Replace every ``{name}`` of `template` whose name is a token (spaces around the name are
    ignored: RingRx's table writes ``{pages }``); unknown ``{names}`` are left as written.

    Single pass: a value containing ``{x}`` is never expanded again. With ``url=True`` each
    value is percent-encoded (UTF-8; every reserved character, so ``&``, ``{``, ``/``, spaces
    and non-ASCII cannot change the URL's structure).
    """

    def replace(match: re.Match[str]) -> str:
        name = match.group(1).strip()
        if name not in tokens:
            return match.group(0)
        text = _token_text(tokens[name])
        return urllib.parse.quote(text, safe="") if url else text

    return _TOKEN.sub(replace, template)


def callback_headers_parse(text: str) -> list[tuple[str, str]]:
    """RingRx custom headers: one ``Name:value`` per line (CRLF or LF), split at the first
    colon, both sides stripped; blank lines skipped.

    Raises:
        ValidationError: on `headers`, naming the line (no colon, a bad or reserved name).
    """
    headers: list[tuple[str, str]] = []
    for number, line in enumerate((text or "").replace("\r\n", "\n").split("\n"), start=1):
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon:
            raise ValidationError({"headers": f"Line {number}: expected Name:value."})
        if not _HEADER_NAME.match(name):
            raise ValidationError({"headers": f"Line {number}: {name!r} is not a header name."})
        if name.lower() in RESERVED_HEADERS:
            raise ValidationError({"headers": f"Line {number}: {name} is set by Patchbay."})
        headers.append((name, value.strip()))
    return headers


def callback_headers_render(text: str, tokens: Mapping[str, Any]) -> dict[str, str]:
    """The custom headers with tokens replaced.

    Raises:
        CallbackConfigError: a value contains CR, LF or NUL after replacement (header
            injection), or the header text is invalid.
    """
    try:
        parsed = callback_headers_parse(text)
    except ValidationError as exc:
        raise CallbackConfigError("; ".join(exc.messages)) from None
    out: dict[str, str] = {}
    for name, template in parsed:
        value = callback_tokens_render(template, tokens)
        if any(c in value for c in "\r\n\x00"):
            raise CallbackConfigError(
                f"Header {name}: a token value contains a line break; refused (header injection)."
            )
        out[name] = value
    return out


def _header_wire_value(value: str) -> str | bytes:
    """Header values are sent as UTF-8 bytes when they are not ASCII (HTTP's default Latin-1
    cannot carry most token values)."""
    return value if value.isascii() else value.encode("utf-8")


def callback_event_tokens(event: InboxEvent) -> dict[str, Any]:
    """The token values of a PBX inbox event: the fields of the body as received (for voicemail
    and fax, the query metadata), as RingRx's token tables name them."""
    return ringrx_tokens(event.event_type, event.payload or {})


# --- Bindings ---------------------------------------------------------------------------------


def _binding_form(value: Any, region: str) -> str:
    return str(phone_normalize(str(value).strip(), region))


def callback_binding_matches(
    subscription: CallbackSubscription, tokens: Mapping[str, Any], region: str
) -> bool:
    """True when the subscription has no bindings, or one of them equals one of the event's
    binding tokens (`BINDING_TOKENS`); phone numbers are compared in E.164."""
    bindings = [b for b in subscription.bindings or [] if str(b).strip()]
    if not bindings:
        return True
    wanted = {_binding_form(b, region) for b in bindings}
    for name in BINDING_TOKENS.get(subscription.callback_type, ()):
        value = tokens.get(name)
        if value not in (None, "") and _binding_form(value, region) in wanted:
            return True
    return False


# --- Subscriptions: reads ---------------------------------------------------------------------


def callback_subscription_list(
    *, user: object, organization: Organization
) -> QuerySet[CallbackSubscription]:
    """The organization's subscriptions `user` may see (none for another tenant's org)."""
    return CallbackSubscription.objects.for_user(user).filter(organization=organization)


def callback_subscription_get(
    *, user: object, organization: Organization, pk: int | str
) -> CallbackSubscription:
    """One subscription of `organization` that `user` may see; Http404 otherwise."""
    return get_object_or_404(
        callback_subscription_list(user=user, organization=organization).select_related(
            "organization"
        ),
        pk=pk,
    )


def callback_delivery_list(
    *, user: object, subscription: CallbackSubscription
) -> QuerySet[CallbackDelivery]:
    """The subscription's deliveries, newest first."""
    return CallbackDelivery.objects.for_user(user).filter(subscription=subscription)


def callback_delivery_get(
    *, user: object, subscription: CallbackSubscription, pk: int | str
) -> CallbackDelivery:
    """One delivery of `subscription` that `user` may see; Http404 otherwise."""
    return get_object_or_404(
        callback_delivery_list(user=user, subscription=subscription).select_related("subscription"),
        pk=pk,
    )


def callback_notices(*, user: object, organization: Organization) -> QuerySet[Notice]:
    """Unresolved notices about the organization's callbacks (a subscription disabled)."""
    prefix = reverse("callbacks:list", args=[organization.pk])
    return Notice.objects.for_user(user).filter(
        organization=organization, resolved_at__isnull=True, action_url__startswith=prefix
    )


# --- Subscriptions: writes --------------------------------------------------------------------


def callback_signing_secret_new() -> str:
    """A new signing secret in the Standard Webhooks form: ``whsec_`` + base64 of 32 bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _clean(subscription: CallbackSubscription) -> None:
    """Validate beyond the model's fields; raises ValidationError naming the field."""
    errors: dict[str, list[str]] = {}
    subscription.name = (subscription.name or "").strip()
    subscription.url = (subscription.url or "").strip()
    if not _URL_START.match(subscription.url):
        errors.setdefault("url", []).append(
            "Enter an http:// or https:// URL with a literal host; {tokens} may follow the host."
        )
    if any(c in subscription.url for c in "\r\n\t "):
        errors.setdefault("url", []).append("The URL may not contain spaces or line breaks.")
    try:
        callback_headers_parse(subscription.headers)
    except ValidationError as exc:
        errors.setdefault("headers", []).extend(exc.messages)
    bindings = subscription.bindings
    if not isinstance(bindings, list) or not all(isinstance(b, str) for b in bindings):
        errors.setdefault("bindings", []).append("Give a list of numbers, mailboxes or groups.")
    else:
        subscription.bindings = [b.strip() for b in bindings if b.strip()]
        if len(subscription.bindings) > MAX_BINDINGS:
            errors.setdefault("bindings", []).append(f"At most {MAX_BINDINGS} bindings.")
        if subscription.bindings and subscription.callback_type in UNBINDABLE_TYPES:
            errors.setdefault("bindings", []).append(
                f"{subscription.callback_type} callbacks are global: they cannot be bound."
            )
    if subscription.auth_password and not subscription.auth_username:
        errors.setdefault("auth_username", []).append("Required with a Basic auth password.")
    if errors:
        raise ValidationError(errors)
    subscription.full_clean()


def callback_subscription_create(
    *,
    organization: Organization,
    name: str,
    callback_type: str,
    url: str,
    auth_username: str = "",
    auth_password: str = "",
    headers: str = "",
    signing_secret: str | None = None,
    bindings: Sequence[str] = (),
    active: bool = True,
) -> tuple[CallbackSubscription, str]:
    """Create a subscription. Returns it and its signing secret, to show once: `signing_secret`
    None generates one (``whsec_…``); "" leaves deliveries unsigned.

    Raises:
        ValidationError: naming the field (URL, headers, bindings, type).
    """
    if signing_secret is None:
        signing_secret = callback_signing_secret_new()
    subscription = CallbackSubscription(
        organization=organization,
        name=name,
        callback_type=callback_type,
        url=url,
        auth_username=auth_username,
        auth_password=auth_password,
        headers=headers,
        signing_secret=signing_secret,
        bindings=list(bindings),
        active=active,
    )
    _clean(subscription)
    subscription.save()
    return subscription, signing_secret


def callback_subscription_update(
    *,
    subscription: CallbackSubscription,
    name: str | None = None,
    callback_type: str | None = None,
    url: str | None = None,
    auth_username: str | None = None,
    auth_password: str | None = None,
    headers: str | None = None,
    signing_secret: str | None = None,
    bindings: Sequence[str] | None = None,
    active: bool | None = None,
) -> CallbackSubscription:
    """Change the given fields (None keeps a field; "" clears a password or secret).

    Activating a disabled subscription resets its failure count, clears `disabled_reason` and
    resolves its notices.

    Raises:
        ValidationError: naming the field.
    """
    changes: dict[str, Any] = {
        "name": name,
        "callback_type": callback_type,
        "url": url,
        "auth_username": auth_username,
        "auth_password": auth_password,
        "headers": headers,
        "signing_secret": signing_secret,
        "bindings": list(bindings) if bindings is not None else None,
        "active": active,
    }
    for field_name, value in changes.items():
        if value is not None:
            setattr(subscription, field_name, value)
    if active and (subscription.disabled_at or subscription.consecutive_failures):
        subscription.consecutive_failures = 0
        subscription.disabled_reason = ""
        subscription.disabled_at = None
        _notices_resolve(subscription)
    _clean(subscription)
    subscription.save()
    return subscription


def callback_subscription_delete(*, subscription: CallbackSubscription) -> None:
    """Delete the subscription, its deliveries and its notices."""
    with transaction.atomic():
        _notices_resolve(subscription)
        subscription.delete()


def callback_subscription_test(*, subscription: CallbackSubscription) -> CallbackDelivery:
    """Queue a delivery of a sample event of the subscription's type (for voicemail and fax
    the sample's metadata as JSON, marked ``"sample": true``, since there is no file).

    Raises:
        ValidationError: the subscription is disabled (enable it first).
    """
    if not subscription.active:
        raise ValidationError("This callback is disabled: enable it before sending a test.")
    sample = callback_sample(subscription.callback_type)
    payload = (
        {**sample, "sample": True} if subscription.callback_type in FILE_CALLBACK_TYPES else sample
    )
    with transaction.atomic():
        delivery = CallbackDelivery.objects.create(
            subscription=subscription,
            webhook_id=_new_webhook_id(),
            payload=payload,
            tokens=_jsonable(ringrx_tokens(subscription.callback_type, sample)),
        )
        transaction.on_commit(partial(callback_delivery_enqueue, delivery_id=delivery.pk))
    return delivery


def callback_delivery_retry(*, delivery: CallbackDelivery) -> CallbackDelivery:
    """Send a `failed` delivery again (an admin's Retry): back to `pending`, due now, its
    attempts reset to 0 for a fresh run of CALLBACK_MAX_ATTEMPTS, its error cleared, and
    enqueued when the transaction commits. It keeps its `webhook_id`, so a receiver that got
    it before can deduplicate. A delivery that failed because its callback was disabled can be
    retried once the callback is enabled again.

    Raises:
        ValidationError: the delivery is not failed, or its callback is disabled (enable it
            first).
    """
    with transaction.atomic():
        locked = (
            CallbackDelivery.objects.select_for_update(of=("self",))
            .select_related("subscription")
            .get(pk=delivery.pk)
        )
        if locked.state != CallbackDelivery.State.FAILED:
            raise ValidationError(
                {"state": f"Only a failed delivery can be retried (it is {locked.state})."}
            )
        if not locked.subscription.active:
            raise ValidationError(
                {
                    "subscription": f"The callback “{locked.subscription.name}” is disabled: "
                    "fix its URL if needed and enable it again (Edit, Active), then retry "
                    "the delivery."
                }
            )
        CallbackDelivery.objects.filter(pk=locked.pk).update(
            state=CallbackDelivery.State.PENDING,
            attempts=0,
            last_status=None,
            last_error="",
            next_attempt_at=timezone.now(),
            delivered_at=None,
        )
        transaction.on_commit(partial(callback_delivery_enqueue, delivery_id=locked.pk))
    delivery.refresh_from_db()
    return delivery


def _notice_url(subscription: CallbackSubscription) -> str:
    return reverse("callbacks:detail", args=[subscription.organization_id, subscription.pk])


def _notices_resolve(subscription: CallbackSubscription) -> None:
    if subscription.pk:
        Notice.objects.filter(
            organization_id=subscription.organization_id,
            action_url=_notice_url(subscription),
            resolved_at__isnull=True,
        ).update(resolved_at=timezone.now())


# Our own event types (not RingRx's): what their callbacks carry.
_OWN_SAMPLES: dict[str, dict[str, Any]] = {
    "message_status": {
        "messageid": "SM-sample-1",
        "message_ref": "sample-ref",
        "status": "delivered",
        "from": "+18185559876",
        "to": "+14155550100",
    },
    "clicktocall": {
        "action": "clicktocall",
        "extension": "1001",
        "phone": "+14155550100",
        "from": "1001",
        "to": "+14155550100",
    },
}


def callback_sample(callback_type: str) -> dict[str, Any]:
    """A sample event of `callback_type`: RingRx's own format for RingRx's callback types."""
    if callback_type in _OWN_SAMPLES:
        return dict(_OWN_SAMPLES[callback_type])
    return ringrx_callback_sample(callback_type, now=timezone.now())


# --- Dispatch --------------------------------------------------------------------------------


def _new_webhook_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def callbacks_dispatch(
    *,
    organization: Organization,
    callback_type: str,
    payload: dict[str, Any] | None,
    tokens: Mapping[str, Any],
    source_event: InboxEvent | None = None,
) -> list[CallbackDelivery]:
    """Queue `payload` for every active subscription of `organization` to `callback_type` whose
    bindings match `tokens`; each delivery is enqueued when the transaction commits.

    `payload` is the JSON body sent as is; None sends `source_event`'s stored file instead
    (voicemail, fax). `tokens` fill the ``{tokens}`` of URLs and headers and are matched with
    the bindings (`BINDING_TOKENS`). With a `source_event`, calling this again for the same
    event creates no second delivery (handlers may run twice): the existing ones are returned.

    Raises:
        ValueError: unknown `callback_type`, or no payload and no file to send.
    """
    if callback_type not in CALLBACK_TYPES:
        raise ValueError(f"unknown callback type {callback_type!r}; one of {CALLBACK_TYPES}")
    if payload is None and (source_event is None or not source_event.file):
        raise ValueError("callbacks_dispatch needs a payload, or a source_event with a file")
    region = organization.default_region or "US"
    subscriptions = CallbackSubscription.objects.filter(
        organization=organization, callback_type=callback_type, active=True
    ).order_by("pk")
    tokens = _jsonable(dict(tokens))
    payload = _jsonable(payload) if payload is not None else None
    deliveries: list[CallbackDelivery] = []
    with transaction.atomic():
        for subscription in subscriptions:
            if not callback_binding_matches(subscription, tokens, region):
                continue
            if source_event is not None:
                existing = CallbackDelivery.objects.filter(
                    subscription=subscription, inbox_event=source_event
                ).first()
                if existing is not None:
                    deliveries.append(existing)
                    continue
            try:
                with transaction.atomic():
                    delivery = CallbackDelivery.objects.create(
                        subscription=subscription,
                        inbox_event=source_event,
                        webhook_id=_new_webhook_id(),
                        payload=payload,
                        tokens=tokens,
                    )
            except IntegrityError:
                # Another run of the same handler created it a moment ago.
                deliveries.append(
                    CallbackDelivery.objects.get(
                        subscription=subscription, inbox_event=source_event
                    )
                )
                continue
            transaction.on_commit(partial(callback_delivery_enqueue, delivery_id=delivery.pk))
            deliveries.append(delivery)
    return deliveries


def _pbx_event_fan_out(event: InboxEvent) -> None:
    """Forward a PBX event to the organization's subscriptions of the same type (idempotent)."""
    if event.organization is None:
        return
    callback_type = PBX_EVENT_CALLBACK_TYPES[event.event_type]
    callbacks_dispatch(
        organization=event.organization,
        callback_type=callback_type,
        payload=None if callback_type in FILE_CALLBACK_TYPES else dict(event.payload),
        tokens=callback_event_tokens(event),
        source_event=event,
    )


for _event_type in PBX_EVENT_CALLBACK_TYPES:
    inbox_handler(InboxEvent.Source.PBX, _event_type)(_pbx_event_fan_out)


# --- Delivery ------------------------------------------------------------------------------------


def _eager() -> bool:
    from portal.celery import app

    return bool(app.conf.task_always_eager)


def callback_delivery_enqueue(*, delivery_id: int, countdown: float | None = None) -> bool:
    """Send `callback_deliver_task(delivery_id)` to the broker; never raises (a broker that
    is down is logged, and `callback_sweep` sends the delivery later)."""
    from integrations.inbox import PUBLISH_RETRY_POLICY
    from integrations.pipeline_tasks import callback_deliver_task

    try:
        callback_deliver_task.apply_async(
            args=[delivery_id], countdown=countdown, retry=True, retry_policy=PUBLISH_RETRY_POLICY
        )
    except Exception as exc:
        logger.warning(
            "callback delivery %s not enqueued (%s: %s); the sweeper will send it",
            delivery_id,
            type(exc).__name__,
            exc,
        )
        return False
    return True


class _AttemptLogger:
    """Writes each attempt of a delivery to the delivery log (no installation)."""

    def __init__(self, delivery: CallbackDelivery) -> None:
        self.delivery = delivery

    def __call__(self, record: AttemptRecord) -> None:
        status = record.status
        DeliveryLogEntry.objects.create(
            organization_id=self.delivery.subscription.organization_id,
            installation=None,
            method_name=record.method_name,
            http_method=record.http_method,
            url=record.url_redacted,
            status_code=status,
            ok=status is not None and 200 <= status < 300 and not record.error,
            duration_ms=max(0, round(record.duration_ms)),
            attempt=self.delivery.attempts,
            error=record.error or "",
            request_body=record.request_body_redacted or "",
            response_body=record.response_body_excerpt or "",
            produced_ids={"webhook_id": self.delivery.webhook_id},
        )


@dataclass
class _Rendered:
    request: OutboundRequest
    auth: requests.auth.AuthBase | None


def _signature(
    secret: str, msg_id: str, timestamp: int, body: bytes | None, path: str | None
) -> str:
    mac = hmac.new(standard_webhooks_key(secret), f"{msg_id}.{timestamp}.".encode(), "sha256")
    if body is not None:
        mac.update(body)
    elif path is not None:
        with open(path, "rb") as handle:
            while chunk := handle.read(64 * 1024):
                mac.update(chunk)
    return "v1," + base64.b64encode(mac.digest()).decode()


def callback_request_build(delivery: CallbackDelivery) -> _Rendered:
    """The HTTP request of one attempt: URL and headers rendered, body, signature.

    Raises:
        CallbackConfigError: a header value would contain a line break, or the file to send
            is no longer stored.
    """
    subscription = delivery.subscription
    tokens = delivery.tokens or {}
    url = callback_tokens_render(subscription.url, tokens, url=True)
    headers: dict[str, Any] = {
        name: _header_wire_value(value)
        for name, value in callback_headers_render(subscription.headers, tokens).items()
    }
    body: bytes | None = None
    body_file: str | None = None
    content_type: str
    if delivery.payload is not None:
        text = json.dumps(delivery.payload, ensure_ascii=False)
        body = text.encode("utf-8")
        content_type = "application/json"
    else:
        event = delivery.inbox_event
        if event is None or not event.file:
            raise CallbackConfigError("The file of this event is no longer stored.")
        try:
            body_file = event.file.path
            open(body_file, "rb").close()
        except (OSError, NotImplementedError) as exc:
            raise CallbackConfigError(f"The file of this event cannot be read ({exc}).") from None
        content_type = event.content_type or "application/octet-stream"
    headers["webhook-id"] = delivery.webhook_id
    if subscription.signing_secret:
        timestamp = int(time.time())
        headers["webhook-timestamp"] = str(timestamp)
        headers["webhook-signature"] = _signature(
            subscription.signing_secret, delivery.webhook_id, timestamp, body, body_file
        )
    request = OutboundRequest(
        http_method="POST",
        url=url,
        headers=headers,
        content_type=content_type,
        text_body=body.decode("utf-8") if body is not None else None,
        body_file=body_file,
        timeout=settings.CALLBACK_TIMEOUT_SECONDS,
        redact={s for s in (subscription.auth_password, subscription.signing_secret) if s},
    )
    auth = (
        requests.auth.HTTPBasicAuth(subscription.auth_username, subscription.auth_password or "")
        if subscription.auth_username
        else None
    )
    return _Rendered(request, auth)


def callback_retry_delay(attempt: int, retry_after: float | None = None) -> float:
    """Seconds before attempt `attempt` + 1: exponential from CALLBACK_RETRY_BASE_SECONDS,
    capped at CALLBACK_RETRY_MAX_SECONDS, with jitter (50 to 100 %), never less than Retry-After."""
    base = float(settings.CALLBACK_RETRY_BASE_SECONDS)
    cap = float(settings.CALLBACK_RETRY_MAX_SECONDS)
    delay = min(cap, base * 2 ** max(0, attempt - 1)) * random.uniform(0.5, 1.0)
    return max(delay, retry_after or 0.0)


def _subscription_failed(subscription: CallbackSubscription, message: str) -> None:
    """Count a failed attempt; disable the subscription (with a notice) at the limit."""
    CallbackSubscription.objects.filter(pk=subscription.pk).update(
        consecutive_failures=F("consecutive_failures") + 1
    )
    subscription.refresh_from_db(fields=["consecutive_failures", "active"])
    limit = settings.CALLBACK_MAX_CONSECUTIVE_FAILURES
    if subscription.active and subscription.consecutive_failures >= limit:
        reason = (
            f"Disabled after {subscription.consecutive_failures} failed deliveries in a row. "
            f"Last error: {message} Fix the receiving URL, then enable the callback again."
        )
        now = timezone.now()
        CallbackSubscription.objects.filter(pk=subscription.pk).update(
            active=False, disabled_reason=reason, disabled_at=now
        )
        subscription.active = False
        subscription.disabled_reason = reason
        subscription.disabled_at = now
        Notice.objects.create(
            organization_id=subscription.organization_id,
            level=Notice.Level.ERROR,
            message=f"Callback “{subscription.name}” ({subscription.callback_type}): {reason}",
            action_url=_notice_url(subscription),
        )
        logger.warning("callback subscription %s disabled: %s", subscription.pk, message)


def callback_deliver(*, delivery_id: int) -> CallbackDelivery | None:
    """Make one attempt at the pending delivery `delivery_id`, if it is due.

    Returns None when another worker holds it (it is being sent) or it does not exist;
    otherwise the delivery with its new state: `delivered`; `pending` with ``next_attempt_at``
    (a transient failure, attempts left); `failed` with `last_error`. The row stays locked
    while the request is sent, so a worker killed mid-attempt leaves it `pending`.
    """
    retry_in: float | None = None
    with transaction.atomic():
        delivery = (
            CallbackDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("subscription", "inbox_event")
            .filter(pk=delivery_id)
            .first()
        )
        if delivery is None:
            return None
        now = timezone.now()
        if delivery.state != CallbackDelivery.State.PENDING or (
            delivery.next_attempt_at and delivery.next_attempt_at > now
        ):
            return delivery
        subscription = delivery.subscription
        if not subscription.active:
            delivery.state = CallbackDelivery.State.FAILED
            delivery.last_error = "Not sent: the callback is disabled."
            delivery.next_attempt_at = None
            delivery.save(update_fields=["state", "last_error", "next_attempt_at"])
            return delivery
        delivery.attempts += 1
        method_name = f"callback:{subscription.callback_type}"
        try:
            rendered = callback_request_build(delivery)
        except CallbackConfigError as exc:
            delivery.state = CallbackDelivery.State.FAILED
            delivery.last_error = str(exc)
            delivery.next_attempt_at = None
            delivery.save(update_fields=["state", "attempts", "last_error", "next_attempt_at"])
            DeliveryLogEntry.objects.create(
                organization_id=subscription.organization_id,
                method_name=method_name,
                http_method="POST",
                url=subscription.url,
                attempt=delivery.attempts,
                error=str(exc),
                produced_ids={"webhook_id": delivery.webhook_id},
            )
            return delivery
        session = HttpSession(
            allow_private_networks=settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS,
            default_timeout=settings.CALLBACK_TIMEOUT_SECONDS,
            max_attempts=1,
            on_attempt=_AttemptLogger(delivery),
        )
        try:
            try:
                response = session.send(
                    rendered.request, method_name=method_name, auth=rendered.auth
                )
            except IntegrationError:
                raise
            except Exception as exc:
                # Not a third party's failure but ours (a value requests cannot send): fail
                # the delivery visibly instead of crashing the task forever.
                logger.exception("callback delivery %s could not be sent", delivery.pk)
                raise IntegrationError(
                    f"Could not send the callback: {type(exc).__name__}: {exc}", permanent=True
                ) from exc
        except IntegrationError as exc:
            delivery.last_status = exc.status
            delivery.last_error = exc.message
            _subscription_failed(subscription, exc.message)
            out_of_attempts = delivery.attempts >= settings.CALLBACK_MAX_ATTEMPTS
            if exc.permanent or out_of_attempts or not subscription.active:
                delivery.state = CallbackDelivery.State.FAILED
                delivery.next_attempt_at = None
                if out_of_attempts and not exc.permanent:
                    delivery.last_error = (
                        f"Gave up after {delivery.attempts} attempts: {exc.message}"
                    )
            else:
                retry_in = callback_retry_delay(delivery.attempts, exc.retry_after)
                delivery.next_attempt_at = timezone.now() + timedelta(seconds=retry_in)
        else:
            delivery.state = CallbackDelivery.State.DELIVERED
            delivery.last_status = response.status
            delivery.last_error = ""
            delivery.next_attempt_at = None
            delivery.delivered_at = timezone.now()
            if subscription.consecutive_failures:
                CallbackSubscription.objects.filter(pk=subscription.pk).update(
                    consecutive_failures=0
                )
        finally:
            session.close()
        delivery.save(
            update_fields=[
                "state",
                "attempts",
                "last_status",
                "last_error",
                "next_attempt_at",
                "delivered_at",
            ]
        )
        if retry_in is not None and not _eager():
            # Without a broker the countdown is not honoured: the sweeper sends it when due.
            transaction.on_commit(
                partial(callback_delivery_enqueue, delivery_id=delivery.pk, countdown=retry_in)
            )
    return delivery


def callback_sweep(*, stuck_after_seconds: float | None = None, limit: int = 1000) -> list[int]:
    """Enqueue the pending deliveries that are due: retries whose time has come, and first
    attempts created more than `stuck_after_seconds` ago (default INBOX_STUCK_AFTER_SECONDS)
    that no worker took (a broker that was down, a worker killed mid-attempt). Returns their
    ids. Enqueueing one being sent is harmless: the attempt holds its row lock."""
    if stuck_after_seconds is None:
        stuck_after_seconds = settings.INBOX_STUCK_AFTER_SECONDS
    now = timezone.now()
    cutoff = now - timedelta(seconds=stuck_after_seconds)
    due = list(
        CallbackDelivery.objects.filter(state=CallbackDelivery.State.PENDING)
        .filter(
            Q(next_attempt_at__isnull=True, created_at__lt=cutoff) | Q(next_attempt_at__lte=now)
        )
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    for delivery_id in due:
        callback_delivery_enqueue(delivery_id=delivery_id)
    return due
