"""Matching inbound provider requests against a spec's `Webhook` models (DESIGN 4.6, 4.9).

`match_webhook` parses the request (JSON, form-urlencoded, multipart, or plain text; the query
string for GET), picks the model it fits and extracts the values its placeholders name:

* a model whose literal `event_key` sits at the `$event_key$` position of its shape wins;
* otherwise the only model without an `$event_key$` position whose method fits and whose
  literal values (strings without placeholders) all match;
* no model: the request is well-formed but describes an event we do not handle → None (the
  caller answers 200 and records it as ignored, so the provider stops retrying).

Malformed input (a body that does not parse, a matched model missing a value it requires) raises
`WebhookRejected` (400, with a message naming what is wrong). Shapes use the response-map rules:
`"[n]"` picks an array element, `"MediaUrl*"` collects numbered fields, values are coerced to
their declared types (`from`/`to` are phones, normalized to E.164 with `region`).

When the spec declares a `signature` block, the request is verified before anything is
parsed: by `integrations.engine.signatures.verify_signature` with the installation's
`properties` (raising `SignatureInvalid`, a `WebhookRejected` with status 401), or by the
`verify_signature` hook a caller passes instead.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs

from integrations.engine.errors import Problem, SpecError
from integrations.engine.expressions import DEFAULT_REGION, evaluate
from integrations.engine.mapping import apply_response_map, coerce_value
from integrations.engine.spec import EVENT_TYPES
from integrations.engine.templating import (
    UNSET,
    format_placeholder,
    iter_template_strings,
    literal_text,
    placeholder_names,
    single_placeholder,
)

if TYPE_CHECKING:
    from integrations.engine.spec import Spec

__all__ = ["InboundRequest", "WebhookMatch", "WebhookRejected", "match_webhook"]

# Values an event of each type cannot do without, checked when the model captures them.
_REQUIRED: Final[Mapping[str, tuple[str, ...]]] = {
    "message": ("from", "to"),
    "mms": ("from", "to"),
    "status": ("status",),
}
_NO_VALUE: Final = object()


class WebhookRejected(Exception):
    """The inbound request is malformed; answer `status` (400) with `message`."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class InboundRequest:
    """The raw request, as given to `verify_signature`."""

    method: str
    content_type: str
    body: bytes
    query: Mapping[str, Any]
    headers: Mapping[str, str]
    # The full URL the provider called (scheme, host, path and query), as it signed it.
    url: str = ""


@dataclass
class WebhookMatch:
    """The model an inbound request matched and the values it carries.

    `values` holds the captured names (`from`, `to`, `content`, `messageid`, `status`...), with
    `status` already translated by the model's `status_map`. `payload` is the parsed request
    (kept so the raw provider event can be stored).
    """

    event_type: str
    event_key: str
    model_index: int
    values: dict[str, Any] = field(default_factory=dict)
    payload: Any = None


def _single_values(pairs: Mapping[str, Any]) -> dict[str, Any]:
    # Query dicts come as {name: [values]} (parse_qs, Django QueryDict lists): one value is a
    # scalar, several stay a list.
    result: dict[str, Any] = {}
    for key, value in pairs.items():
        if isinstance(value, list | tuple):
            result[key] = value[0] if len(value) == 1 else list(value)
        else:
            result[key] = value
    return result


def _parse_multipart(content_type: str, body: bytes) -> dict[str, Any]:
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise WebhookRejected("multipart body could not be parsed (boundary missing?)")
    fields: dict[str, list[Any]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        filename = part.get_filename()
        payload = part.get_payload(decode=True) or b""
        if filename:
            # Providers send media as URLs; an attached file is described, not kept here.
            value: Any = {
                "filename": filename,
                "content_type": part.get_content_type(),
                "size": len(payload),
            }
        else:
            charset = part.get_content_charset() or "utf-8"
            value = payload.decode(charset, "replace")
        fields.setdefault(str(name), []).append(value)
    return _single_values(fields)


def _parse_payload(
    method: str, content_type: str, body: bytes, query: Mapping[str, Any]
) -> tuple[Any, str | None]:
    """(structured data, raw text) of a request; raises WebhookRejected when unparseable."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        if media_type != "multipart/form-data":
            raise WebhookRejected("body is not UTF-8 text") from None
        text = None
    if method == "GET" or not body.strip():
        return _single_values(query), text
    if media_type == "application/json" or media_type.endswith("+json"):
        try:
            return json.loads(text or ""), text
        except ValueError as exc:
            raise WebhookRejected(f"body is not valid JSON: {exc}") from None
    if media_type == "application/x-www-form-urlencoded":
        return _single_values(parse_qs(text or "", keep_blank_values=True)), text
    if media_type == "multipart/form-data":
        return _parse_multipart(content_type, body), text
    # Plain text (or an unlabeled body): JSON if it parses, else only request_body applies.
    try:
        return json.loads(text or ""), text
    except ValueError:
        return None, text


def _at(data: Any, key: str) -> Any:
    if key.startswith("[") and key.endswith("]") and isinstance(data, list):
        try:
            return data[int(key[1:-1])]
        except (ValueError, IndexError):
            return _NO_VALUE
    if isinstance(data, dict) and key in data:
        return data[key]
    return _NO_VALUE


def _shape_fit(template: Any, data: Any, event_key: str, var_char: str) -> tuple[bool, bool]:
    """(literals all match, event_key found at its position) for one model's shape."""
    literals_ok = True
    key_found = False

    def walk(node: Any, value: Any) -> None:
        nonlocal literals_ok, key_found
        if isinstance(node, dict):
            for key, child in node.items():
                if key.endswith("*"):
                    continue
                walk(child, _at(value, literal_text(key, var_char)))
        elif isinstance(node, list):
            if len(node) != 1 and isinstance(value, list):
                for child, item in zip(node, value, strict=False):
                    walk(child, item)
        elif isinstance(node, str):
            name = single_placeholder(node, var_char)
            if name == "event_key":
                if value is not _NO_VALUE and str(value) == event_key:
                    key_found = True
                else:
                    literals_ok = False
            elif (
                name is None
                and not placeholder_names(node, var_char)
                and (value is _NO_VALUE or str(value) != node)
            ):
                literals_ok = False

    walk(template, data)
    return literals_ok, key_found


def _has_event_key_position(model: Mapping[str, Any], var_char: str) -> bool:
    return any(
        single_placeholder(text, var_char) == "event_key"
        for _pointer, text in iter_template_strings(model.get("request_parameters"), keys=False)
    )


def match_webhook(
    spec: Spec,
    *,
    method: str,
    content_type: str,
    body: bytes,
    query: Mapping[str, Any],
    headers: Mapping[str, str],
    region: str = DEFAULT_REGION,
    verify_signature: Callable[[Mapping[str, Any], InboundRequest], None] | None = None,
    url: str = "",
    properties: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> WebhookMatch | None:
    """Match an inbound request against `spec.webhooks`.

    When the spec declares a `signature`, the raw request is verified first: by
    `verify_signature` if given, else by `signatures.verify_signature` with `properties`
    (the installation's property values, which hold the secret), `url` (the full URL the
    provider called; Twilio-style signatures cover it) and `now` (Unix time, for the
    timestamp tolerance).

    Returns the match, or None for a well-formed request no model describes. Raises
    SignatureInvalid (a WebhookRejected with status 401) for an unsigned or badly signed
    request, before any parsing; WebhookRejected (400) for an unparseable body or a matched
    model missing a value it requires. Raises SpecError if an `event_type` expression gives
    something other than message, mms or status (a spec bug).
    """
    method = method.upper()
    if spec.webhook_signature:
        inbound = InboundRequest(method, content_type, body, query, headers, url)
        if verify_signature is not None:
            verify_signature(spec.webhook_signature, inbound)
        else:
            # Imported here: signatures builds its error on WebhookRejected from this module.
            from integrations.engine.signatures import verify_signature as verify

            verify(
                spec.webhook_signature,
                inbound,
                values=properties or {},
                now=now,
                var_char=spec.var_char,
            )
    data, text = _parse_payload(method, content_type or "", body, query)
    var_char = spec.var_char

    keyed: list[int] = []
    shaped: list[int] = []
    for index, model in enumerate(spec.webhooks):
        if str(model.get("request_method", "POST")).upper() != method:
            continue
        template = model.get("request_parameters")
        literals_ok, key_found = _shape_fit(template, data, str(model["event_key"]), var_char)
        if not literals_ok:
            continue
        if key_found:
            keyed.append(index)
        elif not _has_event_key_position(model, var_char):
            if template is None and "request_body" not in model:
                continue
            shaped.append(index)
    if keyed:
        chosen = keyed[0]
    elif len(shaped) == 1:
        chosen = shaped[0]
    else:
        return None
    return _extract(spec, chosen, data, text, headers, region)


def _extract(
    spec: Spec,
    index: int,
    data: Any,
    text: str | None,
    headers: Mapping[str, str],
    region: str,
) -> WebhookMatch:
    model = spec.webhooks[index]
    var_char = spec.var_char
    try:
        mapped = apply_response_map(
            model.get("request_parameters"),
            data if data is not None else UNSET,
            types=spec.types,
            var_char=var_char,
            region=region,
        )
    except SpecError as exc:
        # A value of the wrong type (a non-numeric number): the request is at fault.
        raise WebhookRejected(exc.problems[0].message) from None
    values = dict(mapped.values)
    if mapped.records:
        values.update(mapped.records[0])
    lowered = {str(k).lower(): v for k, v in headers.items()}
    for header, template in (model.get("request_headers") or {}).items():
        name = single_placeholder(template, var_char)
        if name is not None and header.lower() in lowered:
            values[name] = coerce_value(lowered[header.lower()], spec.types.get(name))
    body_name = single_placeholder(model.get("request_body"), var_char)
    if body_name is not None and text is not None:
        values[body_name] = text
    values.setdefault("event_key", model["event_key"])

    event_type = str(model.get("event_type", "message"))
    if event_type not in EVENT_TYPES:
        pointer = spec.webhook_pointer(index) + "/event_type"
        result = evaluate(event_type, {"region": region, **values}, var_char, pointer=pointer)
        if result not in EVENT_TYPES:
            shown = "nothing (a value it uses is unset)" if result is UNSET else repr(result)
            raise SpecError(Problem(pointer, f"gave {shown}, not message, mms or status"))
        event_type = str(result)

    status_map = model.get("status_map")
    if status_map and values.get("status") is not None:
        raw = str(values["status"])
        values["provider_status"] = raw
        values["status"] = status_map.get(raw, raw)

    declared = {
        single_placeholder(t, var_char)
        for _p, t in iter_template_strings(model.get("request_parameters"), keys=False)
    } | {single_placeholder(t, var_char) for t in (model.get("request_headers") or {}).values()}
    missing = [
        format_placeholder(name, var_char)
        for name in _REQUIRED.get(event_type, ())
        if name in declared and values.get(name) in (None, "")
    ]
    if event_type == "status" and not (values.get("messageid") or values.get("message_ref")):
        missing.append("messageid or message_ref")
    if missing:
        raise WebhookRejected(f"{model['event_key']!r} event is missing {', '.join(missing)}")
    return WebhookMatch(
        event_type=event_type,
        event_key=str(model["event_key"]),
        model_index=index,
        values=values,
        payload=data if data is not None else text,
    )
