"""Matching inbound provider requests against a spec's `Webhook` models (DESIGN 4.6, 4.9).

`match_webhook` parses the request (JSON, form-urlencoded, multipart, or plain text; the query
string for GET), picks the model it fits and extracts the values its placeholders name:

* a model whose literal `event_key` sits at the `$event_key$` position of its shape wins;
* otherwise the only model without an `$event_key$` position whose method fits and whose
  literal values (strings without placeholders) all match;
* no model: the request is well-formed but describes an event we do not handle → None (the
  caller answers 200 and records it as ignored, so the provider stops retrying).

Malformed input (a body that does not parse, a matched model missing a value it requires, a
value that does not fit its declared type) raises `WebhookRejected` (400): its `message` names
what is wrong in the spec's terms, its `fields` name each offending field by its place in the
request (``params.to``, ``MediaUrlN``, ``X-Event header``, ``body``) with advice for the sender,
so a caller never has to read the message. Shapes use the response-map rules:
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
import re
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

__all__ = [
    "InboundRequest",
    "WebhookMatch",
    "WebhookRejected",
    "field_places",
    "match_webhook",
    "place_name",
    "value_paths",
]

# Values an event of each type cannot do without, checked when the model captures them.
_REQUIRED: Final[Mapping[str, tuple[str, ...]]] = {
    "message": ("from", "to"),
    "mms": ("from", "to"),
    "status": ("status",),
}
_NO_VALUE: Final = object()
# What the sender should send for a value an event cannot do without.
_VALUE_DESCRIPTIONS: Final[Mapping[str, str]] = {
    "from": "the sender's phone number",
    "to": "the phone number the message was sent to",
    "status": "the delivery status",
    "messageid": "the id of the message this status is about",
    "message_ref": "the id of the message this status is about",
}
# How a declared type reads for the sender.
_TYPE_DESCRIPTIONS: Final[Mapping[str, str]] = {
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "phone": "a phone number written as text",
    "object": "a JSON object",
    "array": "a list",
    "ISO8601Date": "a date and time",
    "string": "text",
}
_SHOWN_VALUE_LENGTH: Final = 60
# A shape key that picks one array element ("[0]", "[-1]"), as the response-map rules read it.
_INDEX_KEY: Final = re.compile(r"\[(-?\d+)\]")


class WebhookRejected(Exception):
    """The inbound request is malformed; answer `status` (400) with `message`.

    `message` says what is wrong in the spec's terms (the placeholders a model misses), for
    whoever tests the spec. The rest is for the *sender* of the webhook:

    * `fields` maps each offending field, named by its place in the request as the sender
      writes it (``params.to``, ``data[2].id``, ``MediaUrlN``, ``X-Event header``, ``body``),
      to what is wrong with it and what to send instead (``"is missing: send the sender's
      phone number."``); empty when no field is at fault (e.g. a bad signature);
    * `advice` is one sentence about all of them (``"params.from and params.to are missing:
      send …"``), without a leading "Invalid request";
    * `model_index` and `pointer` (its JSON pointer in the spec) name the `Webhook` model the
      request matched, when it got that far.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        fields: Mapping[str, list[str]] | None = None,
        advice: str | None = None,
        model_index: int | None = None,
        pointer: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.fields: dict[str, list[str]] = {
            place: list(problems) for place, problems in (fields or {}).items()
        }
        self.advice = advice if advice is not None else message
        self.model_index = model_index
        self.pointer = pointer


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


def _body_rejected(problem: str) -> WebhookRejected:
    """The rejection of a body that cannot be read at all (`problem` follows "body")."""
    return WebhookRejected(
        f"body {problem}",
        fields={"body": [f"{problem}."]},
        advice=f"the body {problem}; fix the request body.",
    )


def _parse_multipart(content_type: str, body: bytes) -> dict[str, Any]:
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise _body_rejected("could not be parsed as multipart/form-data (boundary missing?)")
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
            raise _body_rejected("is not UTF-8 text") from None
        text = None
    if method == "GET" or not body.strip():
        return _single_values(query), text
    if media_type == "application/json" or media_type.endswith("+json"):
        try:
            return json.loads(text or ""), text
        except ValueError as exc:
            raise _body_rejected(f"is not valid JSON: {exc}") from None
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
    request, before any parsing; WebhookRejected (400) for an unparseable body, or a matched
    model missing a value it requires or given values that do not fit their declared types
    (its `fields` name each of them). Raises SpecError if an `event_type` expression gives
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


# -- naming fields by their place in the request ---------------------------------------------


def value_paths(template: Any, name: str, var_char: str) -> list[tuple[str, ...]]:
    """The key paths at which a shape (`request_parameters`) places the placeholder `name`.

    A path is the shape's keys as written (``"MediaUrl*"``, ``"[0]"``), ``"[n]"`` for the
    element of an "each" array and ``"[i]"`` for a positional array element.
    """
    return _value_paths(template, name, var_char, ())


def _value_paths(
    template: Any, name: str, var_char: str, prefix: tuple[str, ...]
) -> list[tuple[str, ...]]:
    if isinstance(template, str):
        return [prefix] if single_placeholder(template, var_char) == name else []
    found: list[tuple[str, ...]] = []
    if isinstance(template, dict):
        for key, child in template.items():
            found.extend(_value_paths(child, name, var_char, (*prefix, str(key))))
    elif isinstance(template, list):
        if len(template) == 1:
            found.extend(_value_paths(template[0], name, var_char, (*prefix, "[n]")))
        else:
            for index, child in enumerate(template):
                found.extend(_value_paths(child, name, var_char, (*prefix, f"[{index}]")))
    return found


def place_name(path: tuple[str, ...], var_char: str) -> str:
    """A key path as the sender reads it: ``params.to``, ``data[0].id``, ``MediaUrlN``."""
    text = ""
    for key in path:
        if key.startswith("[") and key.endswith("]"):
            text += key
            continue
        if key.endswith("*") and len(key) > 1:
            part = literal_text(key[:-1], var_char) + "N"
        else:
            part = literal_text(key, var_char)
        text = f"{text}.{part}" if text else part
    return text


def field_places(model: Mapping[str, Any], name: str, var_char: str) -> list[str]:
    """Where a request of `model` carries `name`: body paths (``params.to``), headers
    (``X-Event header``) or the whole ``body``."""
    places = [
        place_name(path, var_char)
        for path in value_paths(model.get("request_parameters"), name, var_char)
    ]
    for header, template in (model.get("request_headers") or {}).items():
        if single_placeholder(template, var_char) == name:
            places.append(f"{header} header")
    if single_placeholder(model.get("request_body"), var_char) == name:
        places.append("body")
    return list(dict.fromkeys(places))


def _shown(value: Any) -> str:
    text = repr(value)
    if len(text) > _SHOWN_VALUE_LENGTH:
        text = text[: _SHOWN_VALUE_LENGTH - 3] + "..."
    return text


@dataclass(frozen=True)
class _TypeProblem:
    place: str
    name: str
    type_name: str
    value: Any


class _TypeChecker:
    """Finds every captured value of a request that does not fit its declared type.

    Walks a shape over the data as `mapping.apply_response_map` captures it, so that the
    request is rejected naming each such field (the mapper itself stops at the first).
    """

    def __init__(self, types: Mapping[str, str], var_char: str, region: str) -> None:
        self.types = types
        self.var_char = var_char
        self.region = region
        self.problems: list[_TypeProblem] = []

    def check(self, name: str, value: Any, place: str) -> None:
        type_name = self.types.get(name)
        try:
            coerce_value(value, type_name, region=self.region)
        except ValueError:
            self.problems.append(_TypeProblem(place, name, str(type_name), value))

    def walk(self, template: Any, data: Any, path: tuple[str, ...]) -> None:
        if data is UNSET or data is None:
            return
        if isinstance(template, str):
            name = single_placeholder(template, self.var_char)
            if name is not None:
                self.check(name, data, place_name(path, self.var_char))
        elif isinstance(template, dict):
            for key, child in template.items():
                index = _INDEX_KEY.fullmatch(key)
                if index is not None:
                    position = int(index.group(1))
                    if isinstance(data, list) and -len(data) <= position < len(data):
                        self.walk(child, data[position], (*path, key))
                    continue
                if not isinstance(data, dict) or (key.endswith("*") and len(key) > 1):
                    continue  # numbered fields are collected as they are, never coerced
                literal = literal_text(key, self.var_char)
                if literal in data:
                    self.walk(child, data[literal], (*path, key))
        elif isinstance(template, list):
            if len(template) == 1:
                if isinstance(data, dict):  # one object where a list was described
                    self.walk(template[0], data, path)
                elif isinstance(data, list):
                    for position, element in enumerate(data):
                        self.walk(template[0], element, (*path, f"[{position}]"))
            elif isinstance(data, list):
                for position, child in enumerate(template[: len(data)]):
                    self.walk(child, data[position], (*path, f"[{position}]"))


def _path_at(template: Any, pointer: str) -> tuple[str, ...]:
    """The key path (as `value_paths` writes it) of a JSON pointer into a shape."""
    path: list[str] = []
    node = template
    for raw in pointer.split("/")[1:]:
        key = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and key in node:
            path.append(key)
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            path.append("[n]" if len(node) == 1 else f"[{key}]")
            node = node[int(key)]
        else:
            break
    return tuple(path)


def _type_rejection(
    problems: list[_TypeProblem], var_char: str, index: int, pointer: str
) -> WebhookRejected:
    fields: dict[str, list[str]] = {}
    advice: list[str] = []
    for problem in problems:
        expected = _TYPE_DESCRIPTIONS.get(problem.type_name, problem.type_name)
        text = f"must be {expected}, not {_shown(problem.value)}."
        fields.setdefault(problem.place, []).append(text)
        advice.append(f"{problem.place} {text[:-1]}")
    message = "; ".join(
        f"{p.place}: cannot read {_shown(p.value)} as {p.type_name} "
        f"(the declared type of {format_placeholder(p.name, var_char)})"
        for p in problems
    )
    return WebhookRejected(
        message,
        fields=fields,
        advice="; ".join(advice) + ".",
        model_index=index,
        pointer=pointer,
    )


def _missing_rejection(
    model: Mapping[str, Any], groups: list[tuple[str, ...]], var_char: str, index: int, pointer: str
) -> WebhookRejected:
    """The rejection of a request missing values its event cannot do without: each group is
    one required value (or alternatives: messageid or message_ref)."""
    fields: dict[str, list[str]] = {}
    wanted: list[str] = []
    descriptions: list[str] = []
    spec_terms: list[str] = []
    for names in groups:
        places = [p for name in names for p in field_places(model, name, var_char)]
        places = list(dict.fromkeys(places)) or [names[0]]
        description = _VALUE_DESCRIPTIONS.get(names[0], f"a value for {names[0]}")
        for place in places:
            fields.setdefault(place, []).append(f"is missing: send {description}.")
        wanted.append(" or ".join(places))
        descriptions.append(description)
        spec_terms.append(
            " or ".join(format_placeholder(name, var_char) for name in names)
            + f" ({' or '.join(places)})"
        )
    verb = "is" if len(wanted) == 1 else "are"
    return WebhookRejected(
        f"{model['event_key']!r} event is missing {', '.join(spec_terms)}",
        fields=fields,
        advice=f"{' and '.join(wanted)} {verb} missing: send {' and '.join(descriptions)}.",
        model_index=index,
        pointer=pointer,
    )


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
    model_pointer = spec.webhook_pointer(index)
    lowered = {str(k).lower(): v for k, v in headers.items()}
    captured_headers: dict[str, tuple[str, Any]] = {}
    for header, template in (model.get("request_headers") or {}).items():
        name = single_placeholder(template, var_char)
        if name is not None and header.lower() in lowered:
            captured_headers[name] = (header, lowered[header.lower()])

    checker = _TypeChecker(spec.types, var_char, region)
    checker.walk(model.get("request_parameters"), data, ())
    for name, (header, value) in captured_headers.items():
        checker.check(name, value, f"{header} header")
    if checker.problems:
        raise _type_rejection(checker.problems, var_char, index, model_pointer)
    try:
        mapped = apply_response_map(
            model.get("request_parameters"),
            data if data is not None else UNSET,
            types=spec.types,
            var_char=var_char,
            region=region,
        )
    except SpecError as exc:  # pragma: no cover - the checker above finds these first
        problem = exc.problems[0]
        place = place_name(_path_at(model.get("request_parameters"), problem.pointer), var_char)
        raise WebhookRejected(
            f"{place or 'body'}: {problem.message}",
            fields={place or "body": ["is not of the type this integration reads there."]},
            advice=f"{place or 'the body'} is not of the type this integration reads there.",
            model_index=index,
            pointer=model_pointer + "/request_parameters" + problem.pointer,
        ) from None
    values = dict(mapped.values)
    if mapped.records:
        values.update(mapped.records[0])
    for name, (_header, value) in captured_headers.items():
        values[name] = coerce_value(value, spec.types.get(name), region=region)
    body_name = single_placeholder(model.get("request_body"), var_char)
    if body_name is not None and text is not None:
        values[body_name] = text
    values.setdefault("event_key", model["event_key"])

    event_type = str(model.get("event_type", "message"))
    if event_type not in EVENT_TYPES:
        pointer = model_pointer + "/event_type"
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
    missing: list[tuple[str, ...]] = [
        (name,)
        for name in _REQUIRED.get(event_type, ())
        if name in declared and values.get(name) in (None, "")
    ]
    if event_type == "status" and not (values.get("messageid") or values.get("message_ref")):
        missing.append(("messageid", "message_ref"))
    if missing:
        raise _missing_rejection(model, missing, var_char, index, model_pointer)
    return WebhookMatch(
        event_type=event_type,
        event_key=str(model["event_key"]),
        model_index=index,
        values=values,
        payload=data if data is not None else text,
    )
