"""Mapping third-party responses to named values (DESIGN 4.5 and 4.9).

A `response_map` mirrors the shape of the response JSON:

* a string leaf that is one placeholder (`"$contact_id$"`) captures the value at that place;
  literal leaves are ignored;
* an array whose single element is a template means "each element": every element becomes a
  *record* (Users, Contacts, FindContact). A dict response where such an array is expected is
  taken as a one-element list, because many APIs return an object for a single match;
* inside a record, another "each" array collects its captures as a list when the name is
  declared `array`, and keeps the first value otherwise;
* an array template of several elements maps positionally;
* a key `"[n]"` (`"[0]"`, `"[-1]"`) picks one element of an array;
* a key ending in `*` (`"MediaUrl*"`) collects the numbered fields `MediaUrl0`, `MediaUrl1`, ...
  in numeric order into a list (an empty list when there are none);
* a missing path leaves the value unset (never an error); a JSON null is captured as None.

Captured values are coerced to the name's declared type (`coerce_value`). Captures outside any
"each" array go to `MappedResponse.values`; each element of an "each" array is one record.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import phonenumbers

from integrations.engine.errors import Problem, SpecError
from integrations.engine.expressions import DEFAULT_REGION, evaluate
from integrations.engine.templating import (
    UNSET,
    json_pointer,
    literal_text,
    single_placeholder,
    to_text,
)

if TYPE_CHECKING:
    from integrations.engine.spec import Spec

__all__ = [
    "MappedResponse",
    "apply_outputs",
    "apply_response_map",
    "coerce_value",
    "map_headers",
    "map_response",
    "parse_json_body",
]

_INDEX_KEY: Final = re.compile(r"^\[(-?\d+)\]$")
_TRUE: Final = frozenset({"true", "1", "yes", "y", "on"})
_FALSE: Final = frozenset({"false", "0", "no", "n", "off"})


@dataclass
class MappedResponse:
    """What a response map captured.

    `values`: captures outside any "each" array (plus response headers).
    `records`: one dict per element of the "each" array(s), in order.
    `is_list`: the map has an "each" array, so the method returns records (even zero).
    """

    values: dict[str, Any] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)
    is_list: bool = False

    def as_records(self) -> list[dict[str, Any]]:
        """Records for a list map; otherwise the values as one record (none if empty)."""
        if self.is_list:
            return self.records
        return [self.values] if self.values else []

    def first(self) -> dict[str, Any]:
        """The first record merged over the values (what a create method returns), or {}."""
        if self.records:
            return {**self.values, **self.records[0]}
        return dict(self.values)


class _Many(list):
    """Values collected by a nested "each" array inside a record."""


# --------------------------------------------------------------------------------------------
# Coercion


def _coercion_error(value: Any, type_name: str) -> ValueError:
    return ValueError(f"cannot read {value!r} as {type_name}")


def _normalize_date(value: Any) -> Any:
    if isinstance(value, bool):
        raise _coercion_error(value, "ISO8601Date")
    if isinstance(value, int | float):
        seconds = value / 1000 if abs(value) > 100_000_000_000 else value
        moment = dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
    elif isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return text  # a date without a time stays a date
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            # Third parties write dates in many ways; an unreadable one is kept as text
            # rather than failing the whole call.
            return value
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
    else:
        raise _coercion_error(value, "ISO8601Date")
    moment = moment.astimezone(dt.UTC)
    timespec = "milliseconds" if moment.microsecond else "seconds"
    return moment.replace(tzinfo=None).isoformat(timespec=timespec) + "Z"


def _normalize_phone(value: Any, region: str) -> Any:
    text = to_text(value).strip()
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return text  # not a phone number we can read: kept as written
    if not phonenumbers.is_possible_number(number):
        return text
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def coerce_value(value: Any, type_name: str | None, *, region: str = DEFAULT_REGION) -> Any:
    """Convert a value to a spec type.

    None stays None; an unknown or absent type leaves the value as is. `string` renders
    numbers/booleans as text and objects as JSON; `number` and `integer` read numeric text;
    `boolean` reads true/false/1/0/yes/no; `ISO8601Date` normalizes to UTC `...Z` (a Unix
    timestamp is accepted, an unreadable date is kept as text); `phone` normalizes to E.164
    with `region` when possible (kept as text otherwise); `object` reads JSON text; `array`
    wraps a scalar in a list.

    Raises ValueError when the value cannot be read as a number, integer, boolean or object.
    """
    if value is None or value is UNSET or type_name is None:
        return value
    if type_name == "string":
        return to_text(value)
    if type_name in ("number", "integer"):
        if isinstance(value, bool):
            raise _coercion_error(value, type_name)
        number: int | float
        if isinstance(value, int | float):
            number = value
        elif isinstance(value, str):
            text = value.strip()
            if text == "":
                return None  # a blank numeric field is no value
            try:
                number = int(text)
            except ValueError:
                try:
                    number = float(text)
                except ValueError:
                    raise _coercion_error(value, type_name) from None
        else:
            raise _coercion_error(value, type_name)
        if type_name == "integer":
            if isinstance(number, float) and not number.is_integer():
                raise _coercion_error(value, type_name)
            return int(number)
        return number
    if type_name == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float) and value in (0, 1):
            return bool(value)
        if isinstance(value, str):
            text = value.strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            if text == "":
                return None
        raise _coercion_error(value, type_name)
    if type_name == "ISO8601Date":
        return _normalize_date(value)
    if type_name == "phone":
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise _coercion_error(value, type_name)
        return _normalize_phone(value, region)
    if type_name == "object":
        if isinstance(value, dict):
            return value
        if isinstance(value, str):
            try:
                parsed = json.loads(value)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                return parsed
        raise _coercion_error(value, type_name)
    if type_name == "array":
        if isinstance(value, list | tuple):
            return list(value)
        return [value]
    return value


# --------------------------------------------------------------------------------------------
# Response maps


def parse_json_body(body: bytes | str | None) -> Any:
    """Parse a response body as JSON; UNSET when it is empty or not JSON (not an error)."""
    if body is None:
        return UNSET
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8-sig")
        except UnicodeDecodeError:
            return UNSET
    if not body.strip():
        return UNSET
    try:
        return json.loads(body)
    except ValueError:
        return UNSET


class _Mapper:
    """One application of a response map: knows the types, the region and the var_char."""

    def __init__(self, types: Mapping[str, str], var_char: str, region: str, pointer: str):
        self.types = types
        self.var_char = var_char
        self.region = region
        self.pointer = pointer
        self.is_list = False

    def coerce(self, name: str, value: Any, pointer: str) -> Any:
        type_name = self.types.get(name)
        try:
            return coerce_value(value, type_name, region=self.region)
        except ValueError as exc:
            raise SpecError(
                Problem(
                    pointer,
                    f"{exc} (the declared type of {name}); fix the parameter's type",
                )
            ) from None

    def capture(
        self,
        template: Any,
        data: Any,
        out: dict[str, Any],
        records: list[dict[str, Any]] | None,
        pointer: str,
        collecting: bool = False,
    ) -> None:
        """Capture `data` against `template` into `out`.

        `records` is the list top-level "each" elements go to; None inside a record, where a
        nested "each" collects values instead. `collecting` marks leaves under such a nested
        array (coerced per element, gathered by the caller).
        """
        if data is UNSET:
            return
        if isinstance(template, str):
            name = single_placeholder(template, self.var_char)
            if name is None:
                return
            if collecting and self.types.get(name) == "array":
                out[name] = data
            else:
                out[name] = self.coerce(name, data, pointer)
            return
        if isinstance(template, dict):
            for key, child in template.items():
                child_pointer = pointer + json_pointer(key)
                index = _INDEX_KEY.match(key)
                if index is not None:
                    if isinstance(data, list):
                        position = int(index.group(1))
                        if -len(data) <= position < len(data):
                            self.capture(
                                child, data[position], out, records, child_pointer, collecting
                            )
                    continue
                if not isinstance(data, dict):
                    continue
                if key.endswith("*") and len(key) > 1:
                    self.collect_numbered(key[:-1], child, data, out, child_pointer)
                    continue
                key = literal_text(key, self.var_char)  # "$$id" matches a key "$id"
                if key in data:
                    self.capture(child, data[key], out, records, child_pointer, collecting)
            return
        if isinstance(template, list):
            if len(template) == 1:
                self.each(template[0], data, out, records, pointer + "/0")
            elif isinstance(data, list):
                for position, child in enumerate(template[: len(data)]):
                    self.capture(
                        child,
                        data[position],
                        out,
                        records,
                        pointer + json_pointer(position),
                        collecting,
                    )

    def each(
        self,
        template: Any,
        data: Any,
        out: dict[str, Any],
        records: list[dict[str, Any]] | None,
        pointer: str,
    ) -> None:
        if isinstance(data, dict):
            data = [data]  # one object where a list was described: a list of one
        if not isinstance(data, list):
            return
        if records is not None:
            self.is_list = True
            for element in data:
                record: dict[str, Any] = {}
                self.capture(template, element, record, None, pointer)
                if record:
                    records.append(record)
            return
        # A nested "each" inside a record: gather per name, then array or first value.
        gathered: dict[str, _Many] = {}
        for element in data:
            found: dict[str, Any] = {}
            self.capture(template, element, found, None, pointer, collecting=True)
            for name, value in found.items():
                gathered.setdefault(name, _Many()).append(value)
        for name, values in gathered.items():
            if self.types.get(name) == "array":
                out[name] = list(values)
            elif values:
                out[name] = values[0]

    def collect_numbered(
        self, prefix: str, template: Any, data: dict[str, Any], out: dict[str, Any], pointer: str
    ) -> None:
        name = single_placeholder(template, self.var_char)
        if name is None:
            return
        numbered = []
        pattern = re.compile(re.escape(prefix) + r"(\d+)")
        for key, value in data.items():
            match = pattern.fullmatch(key)
            if match is not None:
                numbered.append((int(match.group(1)), value))
        out[name] = [value for _n, value in sorted(numbered, key=lambda item: item[0])]


def apply_response_map(
    template: Any,
    data: Any,
    *,
    types: Mapping[str, str] | None = None,
    var_char: str = "$",
    region: str = DEFAULT_REGION,
    pointer: str = "",
) -> MappedResponse:
    """Apply a response map to parsed JSON `data` (UNSET for "no body": maps nothing).

    `types` gives each name's declared type for coercion (`Spec.types`). Raises SpecError
    (at `pointer` + the map path) when a captured value cannot be read as its declared type.
    """
    result = MappedResponse()
    if template is None:
        return result
    mapper = _Mapper(types or {}, var_char, region, pointer)
    mapper.capture(template, data, result.values, result.records, pointer)
    result.is_list = mapper.is_list or _has_each(template)
    return result


def is_list_map(template: Any) -> bool:
    """Whether a response map returns records (it has an "each" array), whatever the answer."""
    return template is not None and _has_each(template)


def _has_each(template: Any) -> bool:
    if isinstance(template, list):
        return len(template) == 1 or any(_has_each(t) for t in template)
    if isinstance(template, dict):
        return any(_has_each(t) for t in template.values())
    return False


def map_headers(
    headers_map: Mapping[str, str] | None,
    headers: Mapping[str, str] | None,
    *,
    types: Mapping[str, str] | None = None,
    var_char: str = "$",
    region: str = DEFAULT_REGION,
    pointer: str = "",
) -> dict[str, Any]:
    """Capture response headers named by `response_headers_map` (names case-insensitive).

    Raises SpecError (at `pointer`/response_headers_map/<header>) for a value that does not fit
    its declared type.
    """
    if not headers_map or not headers:
        return {}
    lowered = {str(k).lower(): v for k, v in headers.items()}
    captured: dict[str, Any] = {}
    for header, template in headers_map.items():
        name = single_placeholder(template, var_char)
        if name is None or header.lower() not in lowered:
            continue
        type_name = (types or {}).get(name)
        try:
            captured[name] = coerce_value(lowered[header.lower()], type_name, region=region)
        except ValueError as exc:
            raise SpecError(
                Problem(pointer + json_pointer("response_headers_map", header), str(exc))
            ) from None
    return captured


def apply_outputs(
    spec: Spec,
    method: Mapping[str, Any],
    mapped: MappedResponse,
    context: Mapping[str, Any],
    *,
    pointer: str = "",
) -> MappedResponse:
    """Evaluate `outputs` on each record (or on the values) and apply `filter` to records.

    An output sees the context, the values and the record (the record wins); later outputs
    see earlier ones; an UNSET output is not stored. `filter` keeps records for which it is
    true (an UNSET result drops the record). Returns `mapped`, updated in place.
    """
    outputs = method.get("outputs") or {}
    region = to_text(context.get("region") or DEFAULT_REGION)
    types = spec.types

    def compute(target: dict[str, Any]) -> None:
        scope = {**context, **mapped.values, **target}
        for name, expression in outputs.items():
            result = evaluate(
                expression,
                scope,
                spec.var_char,
                pointer=pointer + "/outputs" + json_pointer(name),
            )
            if result is UNSET:
                continue
            try:
                result = coerce_value(result, types.get(name), region=region)
            except ValueError as exc:
                raise SpecError(
                    Problem(pointer + "/outputs" + json_pointer(name), str(exc))
                ) from None
            target[name] = result
            scope[name] = result

    if outputs:
        if mapped.is_list:
            for record in mapped.records:
                compute(record)
        else:
            compute(mapped.values)
    condition = method.get("filter")
    if condition:
        kept = []
        for record in mapped.records:
            scope = {**context, **mapped.values, **record}
            verdict = evaluate(condition, scope, spec.var_char, pointer=pointer + "/filter")
            if verdict is not UNSET and verdict:
                kept.append(record)
        mapped.records = kept
    return mapped


def map_response(
    spec: Spec,
    method: Mapping[str, Any],
    *,
    body: bytes | str | Any | None,
    headers: Mapping[str, str] | None = None,
    context: Mapping[str, Any] | None = None,
    pointer: str = "",
) -> MappedResponse:
    """Map one successful response of `method` (one request or one step).

    `body` is the raw body (bytes/str, parsed as JSON; empty or non-JSON maps nothing) or an
    already parsed JSON value (dict/list). `headers` feeds `response_headers_map`. `context`
    (the request's values) is visible to `outputs` and `filter` and gives the phone `region`.
    `pointer` locates the method in the spec for error messages (`/API/FindContact`).

    Raises SpecError when a captured value does not fit its declared type or an output or
    filter expression fails.
    """
    context = context or {}
    region = to_text(context.get("region") or DEFAULT_REGION)
    data = parse_json_body(body) if isinstance(body, bytes | str) or body is None else body
    mapped = apply_response_map(
        method.get("response_map"),
        data,
        types=spec.types,
        var_char=spec.var_char,
        region=region,
        pointer=pointer + "/response_map",
    )
    mapped.values.update(
        map_headers(
            method.get("response_headers_map"),
            headers,
            types=spec.types,
            var_char=spec.var_char,
            region=region,
            pointer=pointer,
        )
    )
    return apply_outputs(spec, method, mapped, context, pointer=pointer)
