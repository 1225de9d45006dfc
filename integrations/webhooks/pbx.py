"""PBX webhooks: ``POST /api/v1/hooks/pbx/<org webhook key>/<event>``.

Events (docs/pbx-events.md has the payloads and curl examples):

* ``call`` — our normalized call event, validated against `integrations/schemas/call_event.json`;
* RingRx's callback types, in the exact formats of its callback documentation
  (shared/seeds/ringrx-api-and-callbacks.txt): ``cdr``, ``recording``, ``sms``, ``call_alert``,
  ``outreach`` (JSON bodies) and ``voicemail``, ``fax`` (the file is the body, its metadata —
  the callback's tokens ``id``, ``caller``, ``called``, ``duration``/``pages``, ``filename``,
  ``mailbox``, ``created_at`` — in the query string, as a RingRx callback URL such as
  ``…/voicemail?id={id}&caller={caller}&filename={filename}`` sends them).

Any other event name is acknowledged with 200 and stored as ignored.

Each event is stored with `payload` = the body as received (for voicemail/fax: the query
metadata) and `normalized` = the validated fields with phone numbers in E.164 (read in the
organization's default region; extensions and other short numbers are kept as written).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import phonenumbers
from django.http import HttpRequest
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError as SchemaError

from integrations.inbox import inbox_dedup_key
from integrations.models import InboxEvent
from integrations.webhooks.base import (
    ParsedEvent,
    RawBody,
    WebhookError,
    WebhookTarget,
    WebhookView,
    json_object,
    malformed,
    unauthorized,
)
from tenants.models import Organization

CALL_EVENT_SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "call_event.json"

PBX_EVENT_TYPES: tuple[str, ...] = (
    "call",
    "cdr",
    "recording",
    "voicemail",
    "fax",
    "sms",
    "call_alert",
    "outreach",
)
FILE_EVENT_TYPES = frozenset({"voicemail", "fax"})
CDR_DIRECTIONS = ("inbound", "outbound", "internal")
# Fewer digits than this is an extension or a short code, not a phone number: kept as written.
MIN_PHONE_DIGITS = 7

# --- Phone numbers --------------------------------------------------------------------------


def phone_normalize(value: Any, region: str) -> Any:
    """`value` in E.164 when it reads as a phone number in `region`; otherwise unchanged
    (extensions, "anonymous", short codes). None and "" stay as they are."""
    if value is None or value == "":
        return value
    text = str(value).strip()
    if len(re.sub(r"\D", "", text)) < MIN_PHONE_DIGITS:
        return text
    try:
        parsed = phonenumbers.parse(text, (region or "US").upper())
    except phonenumbers.NumberParseException:
        return text
    if not phonenumbers.is_possible_number(parsed):
        return text
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def external_party(direction: str | None, caller: Any, called: Any) -> Any:
    """The external party's number (DESIGN 4.2 `phone`): the caller of an inbound call, the
    called number of an outbound one."""
    return called if direction == "outbound" else caller


# --- The normalized call event --------------------------------------------------------------


def _parse_datetime(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


_format_checker = FormatChecker(formats=())


@_format_checker.checks("date-time", raises=ValueError)
def _is_datetime(value: object) -> bool:
    if isinstance(value, str):
        _parse_datetime(value)
    return True


@_format_checker.checks("uri", raises=ValueError)
def _is_http_uri(value: object) -> bool:
    if isinstance(value, str) and not re.match(r"^https?://[^\s/]+", value):
        raise ValueError(value)
    return True


@cache
def call_event_validator() -> Draft202012Validator:
    """The validator of `integrations/schemas/call_event.json` (loaded once)."""
    schema = json.loads(CALL_EVENT_SCHEMA_PATH.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=_format_checker)


_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "null": "null",
    "object": "an object",
    "array": "a list",
    "number": "a number",
    "boolean": "true or false",
}


def _schema_message(error: SchemaError) -> tuple[str, str]:
    """(field, message) of a schema error, for the 400 body."""
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "required":
        # One error per missing property; its message names it: "'call_id' is a required…".
        match = re.match(r"^'(.+)' is a required property", error.message)
        missing = match.group(1) if match else str(error.validator_value[0])
        return (f"{path}.{missing}" if path else missing), "is required"
    field = path or "body"
    if error.validator == "enum":
        return field, "must be one of " + ", ".join(str(v) for v in error.validator_value)
    if error.validator == "type":
        types = (
            error.validator_value
            if isinstance(error.validator_value, list)
            else [error.validator_value]
        )
        return field, "must be " + " or ".join(_TYPE_NAMES.get(t, t) for t in types)
    if error.validator == "format":
        if error.validator_value == "date-time":
            return field, "must be an ISO 8601 date-time, e.g. 2025-01-31T14:05:00Z"
        return field, "must be an http(s) URL"
    if error.validator == "minimum":
        return field, f"must be {error.validator_value} or more"
    if error.validator == "minLength":
        return field, "must not be empty"
    if error.validator == "maxLength":
        return field, f"must be at most {error.validator_value} characters"
    return field, error.message


def call_event_validate(data: Any) -> dict[str, list[str]]:
    """Every problem of `data` as a call event: field → messages (empty when valid)."""
    errors: dict[str, list[str]] = {}
    for error in sorted(call_event_validator().iter_errors(data), key=lambda e: list(e.path)):
        field, message = _schema_message(error)
        errors.setdefault(field, []).append(message)
    return errors


def call_event_normalize(data: dict[str, Any], region: str) -> dict[str, Any]:
    """The known fields of a valid call event: numbers in E.164, times in ISO 8601 UTC, the
    extension as text, plus `phone` (the external party)."""
    out: dict[str, Any] = {}
    for name in ("event_id", "call_id", "direction", "status", "caller_name", "called_name"):
        if data.get(name) is not None:
            out[name] = data[name]
    for name in ("caller_number", "called_number"):
        out[name] = phone_normalize(data.get(name), region)
    if data.get("extension") is not None:
        out["extension"] = str(data["extension"])
    for name in ("start", "answer", "end"):
        if data.get(name):
            out[name] = _parse_datetime(data[name]).astimezone(UTC).isoformat()
    if data.get("duration") is not None:
        out["duration"] = data["duration"]
    if data.get("recording_url"):
        out["recording_url"] = data["recording_url"]
    out["phone"] = external_party(out["direction"], out["caller_number"], out["called_number"])
    return out


# --- RingRx callback payloads ---------------------------------------------------------------
# Field kinds: "text" (a string), "scalar" (a string or a number, kept as text), "integer" (a
# number or a string of digits), "boolean", "array". (kind, required); optional fields may be
# null. Source: the token tables and sample bodies of the RingRx callback documentation.

_CDR_FIELDS: dict[str, tuple[str, bool]] = {
    "id": ("scalar", True),
    "domain_name": ("text", False),
    "aleg_uuid": ("text", False),
    "responsible_party": ("scalar", False),
    "start_time": ("text", False),
    "hangup_cause": ("text", False),
    "dialed_digits": ("scalar", False),
    "calling_party": ("scalar", False),
    "caller_id_number": ("scalar", False),
    "caller_id_name": ("text", False),
    "duration": ("integer", False),
    "bill_duration": ("integer", False),
    "direction": ("text", False),
    "mailbox": ("scalar", False),
    "aleg_holdtime": ("integer", False),
    "bleg_holdtime": ("integer", False),
    "tags": ("text", False),
}
RINGRX_FIELDS: dict[str, dict[str, tuple[str, bool]]] = {
    "sms": {
        "from": ("scalar", True),
        "to": ("scalar", True),
        "message": ("text", True),
        "timestamp": ("text", False),
        "uuid": ("text", False),
    },
    "cdr": _CDR_FIELDS,
    "recording": {**_CDR_FIELDS, "recording_url": ("text", False)},
    "call_alert": {
        "uuid": ("text", True),
        "created_at": ("scalar", False),
        "callback_id": ("integer", False),
        "domain_name": ("text", False),
        "originally_dialed_number": ("scalar", False),
        "dialed_number": ("scalar", False),
        "caller_number": ("scalar", False),
        "caller_name": ("text", False),
        # Sic: the documentation's sample body spells it "caller_nname" (its token {caller_name}).
        "caller_nname": ("text", False),
        "tags": ("text", False),
        "dialed_user_emails": ("text", False),
        "dialed_users": ("text", False),
    },
    "outreach": {
        "id": ("scalar", True),
        "name": ("text", False),
        "phonenumber": ("scalar", False),
        "email_address": ("text", False),
        "call_state": ("text", False),
        "sms_state": ("text", False),
        "email_state": ("text", False),
        "confirmed": ("boolean", False),
        "cancelled": ("boolean", False),
        "reminder_date": ("text", False),
        "attempt": ("integer", False),
        "voice": ("boolean", False),
        "sms": ("boolean", False),
        "email": ("boolean", False),
        "event_log": ("array", False),
    },
    # voicemail and fax: the query string's metadata (all text on the wire).
    "voicemail": {
        "id": ("scalar", True),
        "caller": ("scalar", False),
        "called": ("scalar", False),
        "duration": ("integer", False),
        "filename": ("text", False),
        "mailbox": ("scalar", False),
        "created_at": ("text", False),
    },
    "fax": {
        "id": ("scalar", True),
        "caller": ("scalar", False),
        "called": ("scalar", False),
        "pages": ("integer", False),
        "filename": ("text", False),
        "mailbox": ("scalar", False),
        "created_at": ("text", False),
    },
}


def _check_kind(name: str, value: Any, kind: str) -> Any:
    """`value` checked against `kind` (integers converted); raises a 400 naming `name`."""
    if kind == "text":
        if not isinstance(value, str):
            raise malformed(name, "must be a string")
        return value
    if kind == "scalar":
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise malformed(name, "must be a string or a number")
        return value
    if kind == "integer":
        if isinstance(value, bool):
            raise malformed(name, "must be an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
            return int(value)
        raise malformed(name, "must be an integer")
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            return value.lower() in ("true", "1")
        raise malformed(name, "must be true or false")
    if kind == "array":
        if not isinstance(value, list):
            raise malformed(name, "must be a list")
        return value
    raise AssertionError(f"unknown field kind {kind}")


def ringrx_fields_check(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """Check `data` against the fields of `event_type`; returns the known fields, typed
    (integers converted). Raises a 400 naming the first field that is missing or wrong."""
    typed: dict[str, Any] = {}
    for name, (kind, required) in RINGRX_FIELDS[event_type].items():
        value = data.get(name)
        if value is None or (required and value == ""):
            if required:
                raise malformed(name, "is required")
            typed[name] = None
            continue
        typed[name] = _check_kind(name, value, kind)
    return typed


def _split_list(value: Any) -> list[str]:
    return [item.strip() for item in str(value or "").split(",") if item.strip()]


def ringrx_normalize(event_type: str, typed: dict[str, Any], region: str) -> dict[str, Any]:
    """The normalized view of a checked RingRx payload (numbers in E.164)."""
    if event_type == "sms":
        return {
            "from": phone_normalize(typed["from"], region),
            "to": phone_normalize(typed["to"], region),
            "message": typed["message"],
            "timestamp": typed["timestamp"],
            "uuid": typed["uuid"],
        }
    if event_type in ("cdr", "recording"):
        direction = (typed["direction"] or "").lower() or None
        if direction is not None and direction not in CDR_DIRECTIONS:
            raise malformed("direction", "must be one of " + ", ".join(CDR_DIRECTIONS))
        caller = phone_normalize(typed["caller_id_number"] or typed["calling_party"], region)
        called = phone_normalize(typed["dialed_digits"], region)
        out = {
            "cdr_id": str(typed["id"]),
            "call_id": typed["aleg_uuid"] or str(typed["id"]),
            "direction": direction,
            "caller_number": caller,
            "caller_name": typed["caller_id_name"],
            "called_number": called,
            "extension": None
            if typed["responsible_party"] is None
            else str(typed["responsible_party"]),
            "start": typed["start_time"],
            "duration": typed["duration"],
            "bill_duration": typed["bill_duration"],
            "hangup_cause": typed["hangup_cause"],
            "mailbox": typed["mailbox"],
            "tags": _split_list(typed["tags"]),
            "phone": external_party(direction, caller, called),
        }
        if event_type == "recording":
            out["recording_url"] = typed["recording_url"]
        return out
    if event_type == "call_alert":
        return {
            "call_id": typed["uuid"],
            "caller_number": phone_normalize(typed["caller_number"], region),
            "caller_name": typed["caller_name"] or typed["caller_nname"],
            "called_number": phone_normalize(typed["originally_dialed_number"], region),
            "dialed_number": None
            if typed["dialed_number"] is None
            else str(typed["dialed_number"]),
            "dialed_users": _split_list(typed["dialed_users"]),
            "dialed_user_emails": _split_list(typed["dialed_user_emails"]),
            "tags": _split_list(typed["tags"]),
            "created_at": typed["created_at"],
            "domain_name": typed["domain_name"],
        }
    if event_type == "outreach":
        return {**typed, "phonenumber": phone_normalize(typed["phonenumber"], region)}
    if event_type in FILE_EVENT_TYPES:
        return {
            **typed,
            "caller": phone_normalize(typed["caller"], region),
            "called": phone_normalize(typed["called"], region),
        }
    raise AssertionError(f"no normalization for {event_type}")


# --- The view ---------------------------------------------------------------------------------


class PbxWebhookView(WebhookView):
    """``POST /api/v1/hooks/pbx/<org_key>/<event>``: authenticated by the organization's
    webhook secret (see `integrations.webhooks.base`)."""

    source: ClassVar[str] = InboxEvent.Source.PBX

    def resolve(self, request: HttpRequest, **kwargs: Any) -> WebhookTarget:
        organization = Organization.objects.filter(webhook_key=kwargs.get("org_key", "")).first()
        if organization is None or not organization.webhook_secret:
            raise unauthorized("Unknown webhook key.")
        return WebhookTarget(organization=organization, secrets=[organization.webhook_secret])

    def is_supported(self, event: str) -> bool:
        return event in PBX_EVENT_TYPES

    def body_is_file(self, event: str) -> bool:
        return event in FILE_EVENT_TYPES

    def parse(
        self, request: HttpRequest, target: WebhookTarget, event: str, body: RawBody
    ) -> ParsedEvent:
        assert target.organization is not None
        region = target.organization.default_region or "US"
        fallback = request.headers.get("webhook-id") or body.sha256
        if event == "call":
            return self._parse_call(body, region)
        if event in FILE_EVENT_TYPES:
            return self._parse_file(request, event, body, region)
        data = json_object(body)
        typed = ringrx_fields_check(event, data)
        normalized = ringrx_normalize(event, typed, region)
        if event == "sms":
            dedup = inbox_dedup_key("sms", typed["uuid"] or fallback)
            correlation = ""
        elif event == "cdr":
            dedup = inbox_dedup_key("cdr", typed["id"])
            correlation = normalized["call_id"]
        elif event == "recording":
            dedup = inbox_dedup_key("recording", typed["id"], typed["recording_url"] or "")
            correlation = normalized["call_id"]
        elif event == "call_alert":
            # One call is offered to a group's users in turn: one callback per offer, all with
            # the call's uuid. A retry of the same offer has the same body.
            dedup = inbox_dedup_key("call_alert", typed["uuid"], body.sha256)
            correlation = typed["uuid"]
        else:  # outreach: creation, updates and disposition share the event's id
            dedup = inbox_dedup_key("outreach", typed["id"], body.sha256)
            correlation = ""
        return ParsedEvent(
            event_type=event,
            dedup_key=dedup,
            payload=data,
            normalized=normalized,
            correlation_key=str(correlation or ""),
        )

    def _parse_call(self, body: RawBody, region: str) -> ParsedEvent:
        data = json_object(body)
        errors = call_event_validate(data)
        if errors:
            raise WebhookError(400, f"Invalid call event: {', '.join(errors)}.", errors)
        normalized = call_event_normalize(data, region)
        if data.get("event_id"):
            dedup = inbox_dedup_key("call", "event", data["event_id"])
        else:
            dedup = inbox_dedup_key("call", data["call_id"], data["status"], body.sha256)
        return ParsedEvent(
            event_type="call",
            dedup_key=dedup,
            payload=data,
            normalized=normalized,
            correlation_key=data["call_id"],
        )

    def _parse_file(
        self, request: HttpRequest, event: str, body: RawBody, region: str
    ) -> ParsedEvent:
        metadata = {key: request.GET.get(key) for key in request.GET}
        typed = ringrx_fields_check(event, metadata)
        if body.size == 0:
            raise malformed("body", f"is empty; the {event} file is the body")
        normalized = ringrx_normalize(event, typed, region)
        normalized["size"] = body.size
        normalized["content_type"] = request.content_type or "application/octet-stream"
        extension = ".wav" if event == "voicemail" else ".pdf"
        file_name = typed["filename"] or f"{event}-{typed['id']}{extension}"
        return ParsedEvent(
            event_type=event,
            dedup_key=inbox_dedup_key(event, typed["id"]),
            payload=metadata,
            normalized=normalized,
            file_name=file_name,
        )
