"""Rendering one spec method into an HTTP request description (DESIGN 4.5, 4.8, 4.9).

`build_request` turns a method (or one step of a method) and a context of values into a
`RenderedRequest`: a plain description the HTTP layer (`integrations.engine.http`) sends. It does
no I/O: authentication headers, the SSRF guard, retries and file streaming are the HTTP
layer's. The executor calls it once per step, merging each step's captures into the values of
the next, and once per phone format when a method declares `phone_formats` (`phone_variants`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, quote_plus, urlsplit

import phonenumbers

from integrations.engine.errors import Problem, SpecError
from integrations.engine.expressions import DEFAULT_REGION, compute_variables, evaluate
from integrations.engine.mapping import coerce_value
from integrations.engine.templating import (
    UNSET,
    json_pointer,
    render_header,
    render_json,
    render_text,
    render_url,
    to_text,
)

if TYPE_CHECKING:
    from integrations.engine.spec import Spec

__all__ = [
    "FORM",
    "JSON",
    "MULTIPART",
    "MultipartPart",
    "RenderedRequest",
    "build_request",
    "flatten_pairs",
    "phone_variants",
    "prepare_context",
    "should_run",
]

JSON: Final = "application/json"
FORM: Final = "application/x-www-form-urlencoded"
MULTIPART: Final = "multipart/form-data"
_QUERY_METHODS: Final = frozenset({"GET", "DELETE"})
# Context names whose values are credentials even though they are not properties.
_TOKEN_NAMES: Final = ("access_token", "refresh_token")
# Types a value given as text (a CLI argument, a form field) is converted to before rendering.
# Phones and dates are left as given: phone_formats renders `$phone$` in several forms on purpose.
_TEXT_COERCED_TYPES: Final = frozenset({"number", "integer", "boolean", "object", "array"})


@dataclass(frozen=True)
class MultipartPart:
    """One part of a multipart/form-data body: a text `value`, or a `file` to stream.

    `file` is a local path or a URL as the spec rendered it (`$recording_file$`); the HTTP
    layer opens or downloads it. `content_type` is None for plain text fields.
    """

    name: str
    value: str | None = None
    file: str | None = None
    filename: str | None = None
    content_type: str | None = None


@dataclass
class RenderedRequest:
    """A request ready to send.

    `query` holds GET/DELETE parameters (the HTTP client encodes them). The body is at most one
    of `json_body` (any JSON value; None means no body), `form`, `multipart`, `text_body`.
    `content_type` is None when there is no body; for multipart the HTTP layer adds the
    boundary. `success_codes` None means any 2xx. `retry_safe` says a POST/PATCH may be
    retried (set by the spec); GET, PUT and DELETE are always retry-safe. `redact` holds the
    secret values (and their URL-encoded forms) to mask in logs and messages;
    `redact_response_keys` the keys of the response whose values a secret parameter captures
    (masked in the logged response, whose values nobody knows before it arrives).
    `accept_errors` (the method's items `{"status": 403, "body_contains": "..."}`) lists error
    answers that count as a success mapping nothing.
    """

    http_method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    query: list[tuple[str, str]] = field(default_factory=list)
    content_type: str | None = None
    json_body: Any = None
    form: list[tuple[str, str]] | None = None
    multipart: list[MultipartPart] | None = None
    text_body: str | None = None
    timeout: float | None = None
    success_codes: list[int] | None = None
    retry_safe: bool = False
    redact: set[str] = field(default_factory=set)
    accept_errors: list[dict[str, Any]] = field(default_factory=list)
    redact_response_keys: frozenset[str] = frozenset()

    def redacted(self, text: str) -> str:
        """`text` with every secret value replaced by `[redacted]` (longest first)."""
        for secret in sorted(self.redact, key=len, reverse=True):
            if secret:
                text = text.replace(secret, "[redacted]")
        return text


def prepare_context(spec: Spec, values: Mapping[str, Any]) -> dict[str, Any]:
    """The values a request is rendered with: typed, with the spec's variables computed.

    Text given for a number, integer, boolean, object or array name is converted (a command
    line gives text). Variables are computed over the values (a variable that is unset keeps
    a value given for the same name). `region` defaults to "US".

    Raises SpecError naming a value that cannot be read as its type, or a failing variable.
    """
    context: dict[str, Any] = {}
    problems = []
    for name, value in values.items():
        type_name = spec.types.get(name)
        if isinstance(value, str) and type_name in _TEXT_COERCED_TYPES:
            try:
                value = coerce_value(value, type_name)
            except ValueError as exc:
                problems.append(Problem("", f"value of {name}: {exc}"))
                continue
        context[name] = value
    if problems:
        raise SpecError(problems)
    context.setdefault("region", DEFAULT_REGION)
    context.update(compute_variables(spec, context))
    return context


def should_run(
    spec: Spec, step: Mapping[str, Any], values: Mapping[str, Any], *, pointer: str = ""
) -> bool:
    """Whether a step's `when` holds (True when it has none; an UNSET result is False).

    `pointer` locates the step (`/API/CreateContact/1`); a failing condition is reported at
    `<pointer>/when`.
    """
    condition = step.get("when")
    if not condition:
        return True
    context = prepare_context(spec, values)
    result = evaluate(condition, context, spec.var_char, pointer=pointer + "/when")
    return result is not UNSET and bool(result)


def _join_url(base: str, path: str) -> str:
    if not path:
        return base
    if path.startswith(("?", "#")):
        return base + path
    return base.rstrip("/") + "/" + path.lstrip("/")


def _add_pair(pairs: list[tuple[str, str]], key: str, value: Any) -> None:
    if value is None or value is UNSET:
        return
    if isinstance(value, list | tuple):
        for item in value:
            _add_pair(pairs, key, item)
        return
    pairs.append((key, to_text(value)))


def flatten_pairs(parameters: Any, *, pointer: str = "") -> list[tuple[str, str]]:
    """Rendered parameters as (key, text) pairs for a query string or a form.

    Booleans become true/false, None drops the key, a list repeats the key, an object value
    becomes JSON text. Raises SpecError when `parameters` is not an object.
    """
    if parameters is None or parameters is UNSET:
        return []
    if not isinstance(parameters, dict):
        raise SpecError(Problem(pointer, "query and form parameters must be an object"))
    pairs: list[tuple[str, str]] = []
    for key, value in parameters.items():
        _add_pair(pairs, key, value)
    return pairs


def _multipart(
    template: Any, context: Mapping[str, Any], var_char: str, pointer: str
) -> list[MultipartPart]:
    if not isinstance(template, dict):
        raise SpecError(Problem(pointer, "multipart request_parameters must be an object"))
    parts: list[MultipartPart] = []
    for raw_name, part in template.items():
        name = render_text(raw_name, context, var_char)
        if not name:
            continue
        if isinstance(part, dict) and "file" in part:
            file_ref = render_json(part["file"], context, var_char)
            if file_ref is UNSET or file_ref is None or file_ref == "":
                continue  # no file to attach: the part is left out, like an unset key
            parts.append(
                MultipartPart(
                    name=name,
                    file=to_text(file_ref),
                    filename=_optional_text(part.get("filename"), context, var_char),
                    content_type=_optional_text(part.get("content_type"), context, var_char),
                )
            )
        elif isinstance(part, dict) and "value" in part:
            value = render_json(part["value"], context, var_char)
            if value is UNSET:
                continue
            parts.append(
                MultipartPart(
                    name=name,
                    value=to_text(value),
                    content_type=_optional_text(part.get("content_type"), context, var_char),
                )
            )
        else:
            value = render_json(part, context, var_char)
            for text in _part_values(value):
                parts.append(MultipartPart(name=name, value=text))
    return parts


def _part_values(value: Any) -> list[str]:
    if value is UNSET or value is None:
        return []
    if isinstance(value, list):
        return [to_text(v) for v in value if v is not UNSET and v is not None]
    return [to_text(value)]


def _optional_text(template: Any, context: Mapping[str, Any], var_char: str) -> str | None:
    if template is None:
        return None
    text = render_text(str(template), context, var_char)
    return text or None


def _redaction_set(spec: Spec, context: Mapping[str, Any]) -> set[str]:
    secrets = spec.secret_values(context)
    for name in _TOKEN_NAMES:
        value = context.get(name)
        if isinstance(value, str) and value:
            secrets.add(value)
    # Secrets also appear percent-encoded inside URLs and form bodies.
    encoded = set()
    for secret in secrets:
        encoded.add(quote(secret, safe=""))
        encoded.add(quote_plus(secret))
    return secrets | encoded


def build_request(
    spec: Spec,
    method: Mapping[str, Any],
    values: Mapping[str, Any],
    *,
    pointer: str = "",
) -> RenderedRequest:
    """Render one request (a method, or one step of a method with steps).

    `values` is the merged context: properties by name, installation values, parameters and
    system values; variables are computed here. `pointer` locates the method in the spec
    (`/API/FindContact`, `/API/CreateContact/1`) for error messages.

    Raises SpecError when: the method is a list of steps (render each step), a URL value is
    unset, the URL is not absolute http(s), a header value contains CR/LF, parameters do not
    fit the content type, or a value or variable cannot be computed.
    """
    if isinstance(method, list):
        raise SpecError(Problem(pointer, "this method has steps: build each step in turn"))
    var_char = spec.var_char
    context = prepare_context(spec, values)
    redact = _redaction_set(spec, context)
    http_method = str(method.get("request_method", "GET")).upper()

    url = _render_request_url(spec, method, context, pointer)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        shown = url
        for secret in sorted(redact, key=len, reverse=True):
            shown = shown.replace(secret, "[redacted]")
        raise SpecError(Problem(pointer, f"URL {shown!r} is not an absolute http(s) URL"))

    headers = _render_headers(spec, method, context, pointer)
    request = RenderedRequest(
        http_method=http_method,
        url=url,
        headers=headers,
        timeout=float(method["timeout"]) if method.get("timeout") is not None else None,
        success_codes=list(method["success_codes"]) if method.get("success_codes") else None,
        retry_safe=bool(method.get("retry_safe", http_method in ("GET", "PUT", "DELETE"))),
        redact=redact,
        accept_errors=[dict(item) for item in method.get("accept_errors") or []],
        redact_response_keys=spec.secret_response_keys(method.get("response_map")),
    )

    parameters_pointer = pointer + "/request_parameters"
    template = method.get("request_parameters")
    if http_method in _QUERY_METHODS:
        if template is not None:
            rendered = render_json(template, context, var_char)
            request.query = flatten_pairs(rendered, pointer=parameters_pointer)
        return request
    if template is None:
        return request

    content_type = str(method.get("request_content_type") or JSON)
    media_type = content_type.split(";", 1)[0].strip().lower()
    request.content_type = content_type
    if media_type == MULTIPART:
        request.multipart = _multipart(template, context, var_char, parameters_pointer)
    elif media_type == FORM:
        rendered = render_json(template, context, var_char)
        request.form = flatten_pairs(rendered, pointer=parameters_pointer)
    elif media_type == JSON or media_type.endswith(("+json", "/json")):
        rendered = render_json(template, context, var_char)
        request.json_body = None if rendered is UNSET else rendered
    elif isinstance(template, str):
        request.text_body = render_text(template, context, var_char)
    else:
        raise SpecError(
            Problem(
                parameters_pointer,
                f"{content_type} takes a text template; use a JSON content type for objects",
            )
        )
    return request


def _render_request_url(
    spec: Spec, method: Mapping[str, Any], context: Mapping[str, Any], pointer: str
) -> str:
    var_char = spec.var_char
    if method.get("request_url"):
        return render_url(
            method["request_url"],
            context,
            var_char,
            encode=True,
            raw_names=spec.raw_url_names,
            whole_url=True,
            pointer=pointer + "/request_url",
        )
    if not spec.resource_url:
        raise SpecError(Problem(pointer, "method has no request_url and the spec no resource_url"))
    base = render_url(spec.resource_url, context, var_char, encode=False, pointer="/resource_url")
    path = render_url(
        method.get("request_path", ""),
        context,
        var_char,
        encode=True,
        pointer=pointer + "/request_path",
    )
    return _join_url(base, path)


def _render_headers(
    spec: Spec, method: Mapping[str, Any], context: Mapping[str, Any], pointer: str
) -> dict[str, str]:
    merged: dict[str, tuple[str, str, str]] = {}  # lower name -> (name, template, pointer)
    for name, template in spec.request_headers.items():
        merged[name.lower()] = (name, template, json_pointer("request_headers", name))
    for name, template in (method.get("request_headers") or {}).items():
        merged[name.lower()] = (
            name,
            template,
            pointer + "/request_headers" + json_pointer(name),
        )
    headers: dict[str, str] = {}
    for name, template, header_pointer in merged.values():
        value = render_header(
            template, context, spec.var_char, header_name=name, pointer=header_pointer
        )
        if value is not UNSET:
            headers[name] = value
    return headers


_LAST_DIGITS = re.compile(r"^last(\d{1,2})$")


def phone_variants(phone_e164: str, formats: list[str], region: str = DEFAULT_REGION) -> list[str]:
    """The phone number in each format of `phone_formats`, in order, without duplicates.

    Formats: `e164` (+15551234567), `national` ((555) 123-4567), `international`
    (+1 555-123-4567), `digits` (15551234567), `national_digits` (5551234567), `rfc3966`
    (tel:+1-555-123-4567), `lastN` (the last N digits, e.g. `last10`). National forms are only
    produced for numbers of the org's `region`: a foreign number's national form would be
    ambiguous in the CRM. A number phonenumbers cannot parse yields itself and its digits.

    Raises SpecError for an unknown format.
    """
    variants: list[str] = []

    def add(text: str) -> None:
        if text and text not in variants:
            variants.append(text)

    try:
        number = phonenumbers.parse(phone_e164, region)
    except phonenumbers.NumberParseException:
        number = None
    all_digits = "".join(ch for ch in phone_e164 if ch.isdigit())
    home_country = phonenumbers.country_code_for_region(region.upper())
    fmt = phonenumbers.PhoneNumberFormat
    for name in formats:
        last = _LAST_DIGITS.match(name)
        if (
            name
            not in (
                "e164",
                "national",
                "international",
                "digits",
                "national_digits",
                "rfc3966",
            )
            and last is None
        ):
            raise SpecError(f"unknown phone format {name!r}")
        if number is None:
            if name == "e164":
                add(phone_e164)
            elif name == "digits":
                add(all_digits)
            elif last is not None:
                add(all_digits[-int(last.group(1)) :])
            continue
        e164 = phonenumbers.format_number(number, fmt.E164)
        domestic = number.country_code == home_country
        if name == "e164":
            add(e164)
        elif name == "international":
            add(phonenumbers.format_number(number, fmt.INTERNATIONAL))
        elif name == "rfc3966":
            add(phonenumbers.format_number(number, fmt.RFC3966))
        elif name == "digits":
            add(e164.lstrip("+"))
        elif name == "national" and domestic:
            add(phonenumbers.format_number(number, fmt.NATIONAL))
        elif name == "national_digits" and domestic:
            national = phonenumbers.format_number(number, fmt.NATIONAL)
            add("".join(ch for ch in national if ch.isdigit()))
        elif last is not None:
            add(e164.lstrip("+")[-int(last.group(1)) :])
    return variants
