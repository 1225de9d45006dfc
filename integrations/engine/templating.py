"""Placeholder rendering for spec templates (DESIGN 4.1, 4.8 and 4.9).

A template is a string in which `$name$` (or `{name}` when the spec says `"var_char": "{}"`)
names a value: a property (by its label, spaces allowed), a parameter, a variable or a system
value. `$$` is a literal `$` (`{{` and `}}` are literal braces under `"{}"`).

Rendering is single pass: the text of a substituted value is never scanned again, so a contact
called `$Client Secret$` stays exactly that and cannot pull a secret into a request.

Where a template is used decides how a value is inserted:

* JSON request bodies (`render_json`): a string that is exactly one placeholder takes the value
  with its type (a number stays a number, an object an object); an unset one removes its key or
  array element; in a longer string a value is rendered as text and an unset one as "". An object
  or array all of whose placeholders are unset is removed whole ("dropping empty blocks").
* URLs (`render_url`): an unset value is a `SpecError` naming it; values are percent-encoded as one
  path segment except base URLs (see `render_url`).
* Header values (`render_header`): text, and a value containing CR, LF or NUL is refused.

Nothing here raises on a well-formed template except the URL and header rules above; finding
mistakes in templates (unknown names, a lone `$`) is `template_problems` / spec validation.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

from integrations.engine.errors import Problem, SpecError

__all__ = [
    "UNSET",
    "Placeholder",
    "encode_path_segment",
    "format_placeholder",
    "is_single_placeholder",
    "is_unset",
    "iter_template_strings",
    "json_pointer",
    "literal_text",
    "placeholder_names",
    "render_header",
    "render_json",
    "render_text",
    "render_url",
    "single_placeholder",
    "template_problems",
    "to_text",
    "tokenize",
]


class _Unset:
    """The type of `UNSET`: a value that was not supplied (distinct from JSON null)."""

    _instance: _Unset | None = None

    def __new__(cls) -> _Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "UNSET"

    def __reduce__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()
"""Marks a value that is not set. Falsy; a whole-value placeholder with it drops its key."""


def is_unset(value: Any) -> bool:
    """True for `UNSET` (a missing value). `None` (JSON null) is a value, not unset."""
    return value is UNSET


@dataclass(frozen=True)
class Placeholder:
    """One `$name$` occurrence in a template; `start`/`end` index the template string."""

    name: str
    start: int
    end: int


# One alternation scanned left to right: an escape, a placeholder, or a stray delimiter.
# Names are anything but the delimiters and line breaks, so "Instance URL" is a name; whether a
# name is known is decided by validation, not by the tokenizer.
_DOLLAR_TOKENS = re.compile(r"(?P<esc>\$\$)|\$(?P<name>[^$\r\n]+)\$|(?P<stray>\$)")
_BRACE_TOKENS = re.compile(r"(?P<esc>\{\{|\}\})|\{(?P<name>[^{}\r\n]+)\}|(?P<stray>[{}])")


def _pattern(var_char: str) -> re.Pattern[str]:
    if var_char == "{}":
        return _BRACE_TOKENS
    return _DOLLAR_TOKENS


def format_placeholder(name: str, var_char: str = "$") -> str:
    """How `name` is written in a template (`$name$` or `{name}`), for messages."""
    return f"{{{name}}}" if var_char == "{}" else f"${name}$"


def tokenize(template: str, var_char: str = "$") -> list[str | Placeholder]:
    """Split a template into literal text (escapes already resolved) and placeholders.

    A stray delimiter (a `$` that opens no placeholder) is kept as literal text; validation
    reports it (`template_problems`).
    """
    parts: list[str | Placeholder] = []
    text: list[str] = []
    position = 0
    for match in _pattern(var_char).finditer(template):
        text.append(template[position : match.start()])
        position = match.end()
        if match.group("esc") is not None:
            text.append(match.group("esc")[0])
        elif match.group("stray") is not None:
            text.append(match.group("stray"))
        else:
            if text:
                joined = "".join(text)
                if joined:
                    parts.append(joined)
                text = []
            parts.append(Placeholder(match.group("name"), match.start(), match.end()))
    text.append(template[position:])
    joined = "".join(text)
    if joined:
        parts.append(joined)
    return parts


def literal_text(template: str, var_char: str = "$") -> str:
    """A template without placeholders as the text it stands for (`$$` → `$`).

    Used for keys of response maps and webhook shapes, which are matched, not rendered. A
    template with placeholders is returned unchanged.
    """
    if var_char == "{}":
        if "{" not in template and "}" not in template:
            return template
    elif "$" not in template:
        return template
    parts = tokenize(template, var_char)
    if any(isinstance(part, Placeholder) for part in parts):
        return template
    return "".join(str(part) for part in parts)


def placeholder_names(template: str, var_char: str = "$") -> list[str]:
    """Names used in a template, in order of appearance, without duplicates."""
    names: dict[str, None] = {}
    for part in tokenize(template, var_char):
        if isinstance(part, Placeholder):
            names.setdefault(part.name, None)
    return list(names)


def template_problems(template: str, var_char: str = "$") -> list[str]:
    """Syntax problems of a template (stray delimiters), as messages. Names are not checked."""
    problems = []
    for match in _pattern(var_char).finditer(template):
        if match.group("stray") is not None:
            char = match.group("stray")
            escape = "$$" if char == "$" else char * 2
            problems.append(
                f"unescaped {char!r} at position {match.start()} "
                f"(write {escape} for a literal {char!r}, or close the placeholder)"
            )
    return problems


def single_placeholder(template: Any, var_char: str = "$") -> str | None:
    """The name if `template` is a string made of exactly one placeholder, else None."""
    if not isinstance(template, str):
        return None
    parts = tokenize(template, var_char)
    if len(parts) == 1 and isinstance(parts[0], Placeholder):
        return parts[0].name
    return None


def is_single_placeholder(template: Any, var_char: str = "$") -> bool:
    """True if `template` is a string made of exactly one placeholder."""
    return single_placeholder(template, var_char) is not None


def to_text(value: Any) -> str:
    """Render a value as text the way a spec author expects in a string or query.

    Booleans are `true`/`false` (JSON style), None and UNSET are "", objects and arrays are
    compact JSON, datetimes ISO 8601.
    """
    if isinstance(value, str):
        return value
    if value is None or value is UNSET:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _lookup(values: Mapping[str, Any], name: str) -> Any:
    return values.get(name, UNSET)


def render_text(template: str, values: Mapping[str, Any], var_char: str = "$") -> str:
    """Render a template as text; unset values render as ""."""
    out = []
    for part in tokenize(template, var_char):
        if isinstance(part, Placeholder):
            out.append(to_text(_lookup(values, part.name)))
        else:
            out.append(part)
    return "".join(out)


def render_json(
    template: Any,
    values: Mapping[str, Any],
    var_char: str = "$",
    *,
    drop_empty_blocks: bool = True,
) -> Any:
    """Render a JSON template (request_parameters) with typed whole-value placeholders.

    Returns `UNSET` only when `template` itself is a single unset placeholder; a root object or
    array is always returned (possibly empty). Object keys are templates too; a key that renders
    to "" drops its entry.
    """
    value, _total, _set = _render_json(template, values, var_char, drop_empty_blocks)
    return value


def _render_json(
    template: Any, values: Mapping[str, Any], var_char: str, drop: bool
) -> tuple[Any, int, int]:
    """Render and count placeholders (total, set) under this node, for dropping empty blocks."""
    if isinstance(template, str):
        parts = tokenize(template, var_char)
        if len(parts) == 1 and isinstance(parts[0], Placeholder):
            value = _lookup(values, parts[0].name)
            return value, 1, 0 if value is UNSET else 1
        total = set_count = 0
        out = []
        for part in parts:
            if isinstance(part, Placeholder):
                value = _lookup(values, part.name)
                total += 1
                set_count += value is not UNSET
                out.append(to_text(value))
            else:
                out.append(part)
        return "".join(out), total, set_count
    if isinstance(template, dict):
        total = set_count = 0
        result: dict[str, Any] = {}
        for raw_key, child in template.items():
            key_parts = tokenize(raw_key, var_char)
            key_names = [p.name for p in key_parts if isinstance(p, Placeholder)]
            # A key is rendered when it holds a placeholder or an escape (`"$$filter"`).
            literal_key = not raw_key or key_parts == [raw_key]
            key = raw_key if literal_key else render_text(raw_key, values, var_char)
            key_set = sum(_lookup(values, n) is not UNSET for n in key_names)
            total += len(key_names)
            set_count += key_set
            value, child_total, child_set = _render_json(child, values, var_char, drop)
            total += child_total
            set_count += child_set
            if value is UNSET or key == "":
                continue
            if drop and _is_empty_block(value, child_total, child_set):
                continue
            result[key] = value
        return result, total, set_count
    if isinstance(template, list):
        total = set_count = 0
        items: list[Any] = []
        for child in template:
            value, child_total, child_set = _render_json(child, values, var_char, drop)
            total += child_total
            set_count += child_set
            if value is UNSET:
                continue
            if drop and _is_empty_block(value, child_total, child_set):
                continue
            items.append(value)
        return items, total, set_count
    return template, 0, 0


def _is_empty_block(value: Any, total: int, set_count: int) -> bool:
    # Only containers are dropped: a longer string with unset values renders "" (4.1), and a
    # block of literals with no placeholders is the author's and always kept.
    return isinstance(value, dict | list) and total > 0 and set_count == 0


def encode_path_segment(text: str) -> str:
    """Percent-encode text as exactly one URL path segment (`/`, `?`, `#` encoded too).

    A value made only of dots is encoded too, so `..` cannot climb out of the path.
    """
    if text and set(text) == {"."}:
        return "%2E" * len(text)
    return quote(text, safe="")


def render_url(
    template: str,
    values: Mapping[str, Any],
    var_char: str = "$",
    *,
    encode: bool = True,
    raw_names: Collection[str] = (),
    whole_url: bool = False,
    pointer: str = "",
) -> str:
    """Render a URL template.

    With `encode`, each substituted value is percent-encoded as one path segment, except values
    named in `raw_names` (properties and installation values: base URLs are inserted as written)
    and, for a `whole_url` template (request_url), a placeholder that starts it (it can only be
    a base URL). A `request_path` is not a whole URL: a value that starts it is one segment
    like any other. Without `encode` (resource_url) every value is inserted as written.

    Raises SpecError naming every placeholder that is unset or null.
    """
    out = []
    missing: list[str] = []
    for part in tokenize(template, var_char):
        if not isinstance(part, Placeholder):
            out.append(part)
            continue
        value = _lookup(values, part.name)
        if value is UNSET or value is None:
            missing.append(format_placeholder(part.name, var_char))
            continue
        text = to_text(value)
        leading_base = whole_url and part.start == 0
        if encode and not leading_base and part.name not in raw_names:
            text = encode_path_segment(text)
        out.append(text)
    if missing:
        raise SpecError(Problem(pointer, f"no value for {', '.join(missing)}, which the URL needs"))
    return "".join(out)


_FORBIDDEN_HEADER_CHARS = frozenset("\r\n\x00")


def render_header(
    template: str,
    values: Mapping[str, Any],
    var_char: str = "$",
    *,
    header_name: str = "",
    pointer: str = "",
) -> str | Any:
    """Render a header value; `UNSET` when it is one unset placeholder (drop the header).

    Raises SpecError when the rendered value contains CR, LF or NUL (header injection). The
    message names the header, never the value (it may be a secret).
    """
    name = single_placeholder(template, var_char)
    if name is not None and _lookup(values, name) is UNSET:
        return UNSET
    text = render_text(template, values, var_char)
    if _FORBIDDEN_HEADER_CHARS.intersection(text):
        raise SpecError(
            Problem(pointer, f"header {header_name!r}: value contains a line break or NUL")
        )
    return text


def json_pointer(*parts: str | int) -> str:
    """Build an RFC 6901 pointer from path parts ("~" and "/" escaped)."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def iter_template_strings(
    template: Any, pointer: str = "", *, keys: bool = True
) -> Iterator[tuple[str, str]]:
    """Yield (pointer, string) for every string in a JSON template, keys included by default."""
    if isinstance(template, str):
        yield pointer, template
    elif isinstance(template, dict):
        for key, child in template.items():
            child_pointer = pointer + json_pointer(key)
            if keys and isinstance(key, str):
                yield child_pointer, key
            yield from iter_template_strings(child, child_pointer, keys=keys)
    elif isinstance(template, list):
        for index, child in enumerate(template):
            yield from iter_template_strings(child, pointer + json_pointer(index), keys=keys)
