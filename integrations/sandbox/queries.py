"""Small parsers for the query languages the generic CRM sandbox accepts.

* :func:`soql_parse` — a SOQL subset (``SELECT f, … FROM Object [WHERE cond] [LIMIT n]``,
  conditions ``Field = 'x'``, ``!=``, ``LIKE`` joined by ``AND``/``OR`` with parentheses).
  String literals honour SOQL's backslash escapes (``\\'``, ``\\"``, ``\\\\``, ``\\n``,
  ``\\r``, ``\\t``, ``\\b``, ``\\f``, ``\\uXXXX``, and ``\\_``/``\\%`` inside LIKE), as
  Salesforce documents them; an unescaped quote ends the literal, so an unescaped
  ``O'Brien`` is a malformed query, exactly the bug ``quote(s, "soql")`` exists to prevent.
* :func:`odata_parse_filter` — an OData ``$filter`` subset (``Field eq 'x'``, ``ne``,
  ``contains(Field,'x')``, ``startswith(Field,'x')``, ``and``/``or``/parentheses) where a
  quote inside a literal is doubled (``'O''Brien'``), as OData specifies.

Both produce a predicate over a record (a dict keyed by the language's field names).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Predicate = Callable[[dict[str, Any]], bool]


class QuerySyntaxError(ValueError):
    """The query could not be parsed; the message says where."""


@dataclass(frozen=True)
class Token:
    """A lexical token: ``kind`` is ``string``, ``number``, ``name``, ``op`` or ``punct``."""

    kind: str
    value: str
    position: int


# ---------------------------------------------------------------------------
# SOQL
# ---------------------------------------------------------------------------

_SOQL_ESCAPES = {
    "'": "'",
    '"': '"',
    "\\": "\\",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "b": "\b",
    "f": "\f",
}


def _soql_string(text: str, start: int) -> tuple[str, str, int]:
    """Read a quoted SOQL literal starting at ``text[start] == "'"``.

    Returns (value, like_pattern, index after the closing quote). ``like_pattern`` is the
    value as a regular expression for LIKE, where ``%``/``_`` are wildcards unless escaped.
    """
    index = start + 1
    value: list[str] = []
    pattern: list[str] = []
    while index < len(text):
        char = text[index]
        if char == "'":
            return "".join(value), "".join(pattern), index + 1
        if char == "\\":
            if index + 1 >= len(text):
                break
            escaped = text[index + 1]
            if escaped in _SOQL_ESCAPES:
                value.append(_SOQL_ESCAPES[escaped])
                pattern.append(re.escape(_SOQL_ESCAPES[escaped]))
                index += 2
                continue
            if escaped in "_%":
                value.append("\\" + escaped)
                pattern.append(re.escape(escaped))
                index += 2
                continue
            if escaped == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[index + 2 : index + 6]):
                decoded = chr(int(text[index + 2 : index + 6], 16))
                value.append(decoded)
                pattern.append(re.escape(decoded))
                index += 6
                continue
            raise QuerySyntaxError(f"invalid escape \\{escaped} at position {index}")
        value.append(char)
        pattern.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
        index += 1
    raise QuerySyntaxError(f"unterminated string starting at position {start}")


def _soql_tokens(text: str) -> list[Token]:
    tokens: list[Token] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char.isspace():
            index += 1
        elif char == "'":
            value, pattern, end = _soql_string(text, index)
            tokens.append(Token("string", value, index))
            tokens.append(Token("like", pattern, index))
            index = end
        elif char in "(),":
            tokens.append(Token("punct", char, index))
            index += 1
        elif text.startswith("!=", index) or text.startswith("<>", index):
            tokens.append(Token("op", "!=", index))
            index += 2
        elif char == "=":
            tokens.append(Token("op", "=", index))
            index += 1
        elif match := re.match(r"[A-Za-z_][A-Za-z0-9_.]*", text[index:]):
            tokens.append(Token("name", match.group(0), index))
            index += len(match.group(0))
        elif match := re.match(r"\d+", text[index:]):
            tokens.append(Token("number", match.group(0), index))
            index += len(match.group(0))
        else:
            raise QuerySyntaxError(f"unexpected character {char!r} at position {index}")
    return tokens


@dataclass
class SoqlQuery:
    """A parsed SOQL query."""

    fields: list[str]
    object_name: str
    where: Predicate | None
    limit: int | None


class _Parser:
    def __init__(self, tokens: list[Token], text: str) -> None:
        self.tokens = tokens
        self.index = 0
        self.text = text

    def peek(self) -> Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise QuerySyntaxError("unexpected end of query")
        self.index += 1
        return token

    def keyword(self, *words: str) -> str | None:
        token = self.peek()
        if token and token.kind == "name" and token.value.upper() in words:
            self.index += 1
            return token.value.upper()
        return None

    def expect_keyword(self, word: str) -> None:
        if self.keyword(word) is None:
            token = self.peek()
            where = f"at position {token.position}" if token else "at the end"
            raise QuerySyntaxError(f"expected {word} {where}")

    def expect_punct(self, char: str) -> None:
        token = self.take()
        if token.kind != "punct" or token.value != char:
            raise QuerySyntaxError(f"expected {char!r} at position {token.position}")

    def string(self) -> tuple[str, str]:
        token = self.take()
        if token.kind != "string":
            raise QuerySyntaxError(f"expected a quoted string at position {token.position}")
        pattern = self.take()  # the LIKE form always follows its string
        return token.value, pattern.value


def _field_value(record: dict[str, Any], name: str) -> str:
    for key, value in record.items():
        if key.lower() == name.lower():
            return "" if value is None else str(value)
    return ""


def _soql_condition(parser: _Parser, fields: set[str]) -> Predicate:
    if (token := parser.peek()) and token.kind == "punct" and token.value == "(":
        parser.take()
        inner = _soql_or(parser, fields)
        parser.expect_punct(")")
        return inner
    name = parser.take()
    if name.kind != "name":
        raise QuerySyntaxError(f"expected a field name at position {name.position}")
    if name.value.lower() not in fields:
        raise QuerySyntaxError(f"no such column '{name.value}'")
    if parser.keyword("LIKE"):
        _value, pattern = parser.string()
        regex = re.compile(f"^{pattern}$", re.IGNORECASE | re.DOTALL)
        return lambda record: bool(regex.match(_field_value(record, name.value)))
    operator = parser.take()
    if operator.kind != "op":
        raise QuerySyntaxError(f"expected =, != or LIKE at position {operator.position}")
    value, _pattern = parser.string()
    if operator.value == "=":
        return lambda record: _field_value(record, name.value) == value
    return lambda record: _field_value(record, name.value) != value


def _soql_and(parser: _Parser, fields: set[str]) -> Predicate:
    parts = [_soql_condition(parser, fields)]
    while parser.keyword("AND"):
        parts.append(_soql_condition(parser, fields))
    return lambda record: all(part(record) for part in parts)


def _soql_or(parser: _Parser, fields: set[str]) -> Predicate:
    parts = [_soql_and(parser, fields)]
    while parser.keyword("OR"):
        parts.append(_soql_and(parser, fields))
    return lambda record: any(part(record) for part in parts)


def soql_parse(text: str, objects: dict[str, set[str]]) -> SoqlQuery:
    """Parse a SOQL subset against ``objects`` (object name → its field names, lowercase).

    Raises:
        QuerySyntaxError: malformed query, unknown object or field.
    """
    parser = _Parser(_soql_tokens(text), text)
    parser.expect_keyword("SELECT")
    selected: list[str] = []
    while True:
        token = parser.take()
        if token.kind != "name":
            raise QuerySyntaxError(f"expected a field name at position {token.position}")
        selected.append(token.value)
        following = parser.peek()
        if following and following.kind == "punct" and following.value == ",":
            parser.take()
            continue
        break
    parser.expect_keyword("FROM")
    object_token = parser.take()
    known = {name.lower(): name for name in objects}
    if object_token.kind != "name" or object_token.value.lower() not in known:
        raise QuerySyntaxError(f"sObject type '{object_token.value}' is not supported")
    object_name = known[object_token.value.lower()]
    fields = objects[object_name]
    for field_name in selected:
        if field_name.lower() not in fields:
            raise QuerySyntaxError(f"no such column '{field_name}' on entity '{object_name}'")
    where = _soql_or(parser, fields) if parser.keyword("WHERE") else None
    limit = None
    if parser.keyword("LIMIT"):
        token = parser.take()
        if token.kind != "number":
            raise QuerySyntaxError(f"expected a number after LIMIT at position {token.position}")
        limit = int(token.value)
    if (extra := parser.peek()) is not None:
        raise QuerySyntaxError(f"unexpected token {extra.value!r} at position {extra.position}")
    return SoqlQuery(selected, object_name, where, limit)


def soql_quote(value: str) -> str:
    """A SOQL string literal for ``value`` (the reference for the spec engine's ``quote``)."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f"'{escaped}'"


# ---------------------------------------------------------------------------
# OData $filter
# ---------------------------------------------------------------------------


def _odata_tokens(text: str) -> list[Token]:
    tokens: list[Token] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char.isspace():
            index += 1
        elif char == "'":
            end = index + 1
            value: list[str] = []
            while True:
                if end >= len(text):
                    raise QuerySyntaxError(f"unterminated string starting at position {index}")
                if text[end] == "'":
                    if text[end + 1 : end + 2] == "'":
                        value.append("'")
                        end += 2
                        continue
                    break
                value.append(text[end])
                end += 1
            tokens.append(Token("string", "".join(value), index))
            index = end + 1
        elif char in "(),":
            tokens.append(Token("punct", char, index))
            index += 1
        elif match := re.match(r"[A-Za-z_][A-Za-z0-9_/]*", text[index:]):
            tokens.append(Token("name", match.group(0), index))
            index += len(match.group(0))
        elif match := re.match(r"-?\d+(\.\d+)?", text[index:]):
            tokens.append(Token("number", match.group(0), index))
            index += len(match.group(0))
        else:
            raise QuerySyntaxError(f"unexpected character {char!r} at position {index}")
    return tokens


def _odata_operand(parser: _Parser) -> str:
    token = parser.take()
    if token.kind not in ("string", "number"):
        raise QuerySyntaxError(f"expected a literal at position {token.position}")
    return token.value


def _odata_term(parser: _Parser, fields: set[str]) -> Predicate:
    token = parser.take()
    if token.kind == "punct" and token.value == "(":
        inner = _odata_or(parser, fields)
        parser.expect_punct(")")
        return inner
    if token.kind == "name" and token.value.lower() == "not":
        inner = _odata_term(parser, fields)
        return lambda record: not inner(record)
    if token.kind != "name":
        raise QuerySyntaxError(f"expected a property at position {token.position}")
    if token.value.lower() in ("contains", "startswith", "endswith"):
        function = token.value.lower()
        parser.expect_punct("(")
        field_token = parser.take()
        if field_token.kind != "name" or field_token.value.lower() not in fields:
            raise QuerySyntaxError(f"could not find a property named '{field_token.value}'")
        parser.expect_punct(",")
        literal = _odata_operand(parser)
        parser.expect_punct(")")
        name = field_token.value

        def call(record: dict[str, Any]) -> bool:
            value = _field_value(record, name).lower()
            needle = literal.lower()
            if function == "contains":
                return needle in value
            if function == "startswith":
                return value.startswith(needle)
            return value.endswith(needle)

        return call
    if token.value.lower() not in fields:
        raise QuerySyntaxError(f"could not find a property named '{token.value}'")
    operator = parser.take()
    if operator.kind != "name" or operator.value.lower() not in ("eq", "ne"):
        raise QuerySyntaxError(f"expected eq or ne at position {operator.position}")
    literal = _odata_operand(parser)
    name = token.value
    if operator.value.lower() == "eq":
        return lambda record: _field_value(record, name) == literal
    return lambda record: _field_value(record, name) != literal


def _odata_and(parser: _Parser, fields: set[str]) -> Predicate:
    parts = [_odata_term(parser, fields)]
    while (token := parser.peek()) and token.kind == "name" and token.value.lower() == "and":
        parser.take()
        parts.append(_odata_term(parser, fields))
    return lambda record: all(part(record) for part in parts)


def _odata_or(parser: _Parser, fields: set[str]) -> Predicate:
    parts = [_odata_and(parser, fields)]
    while (token := parser.peek()) and token.kind == "name" and token.value.lower() == "or":
        parser.take()
        parts.append(_odata_and(parser, fields))
    return lambda record: any(part(record) for part in parts)


def odata_parse_filter(text: str, fields: set[str]) -> Predicate:
    """Parse an OData ``$filter`` expression over ``fields`` (lowercase names).

    Raises:
        QuerySyntaxError: malformed expression or unknown property.
    """
    parser = _Parser(_odata_tokens(text), text)
    predicate = _odata_or(parser, fields)
    if (extra := parser.peek()) is not None:
        raise QuerySyntaxError(f"syntax error at position {extra.position}: {extra.value!r}")
    return predicate


def odata_quote(value: str) -> str:
    """An OData string literal for ``value`` (quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"
