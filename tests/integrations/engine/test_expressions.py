"""The expression language: functions, operators, unset propagation, limits, variables."""

from __future__ import annotations

import json
import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from integrations.engine.expressions import (
    MAX_EXPRESSION_LENGTH,
    ExpressionError,
    compute_variables,
    evaluate,
    expression_problems,
    quote_literal,
)
from integrations.engine.spec import load_spec
from integrations.engine.templating import UNSET
from tests.integrations.engine.seed_examples import crm_seed_spec_text


@pytest.mark.parametrize(
    ("expression", "values", "expected"),
    [
        ("$call_duration$ * 1000", {"call_duration": 42}, 42000),
        (
            "'Inbound call' if $call_direction$ == 'inbound' else 'Outbound call'",
            {"call_direction": "outbound"},
            "Outbound call",
        ),
        (
            "format_date($call_start$, '%Y-%m-%d %H:%M:%S')",
            {"call_start": "2024-07-13T18:27:25+02:00"},
            "2024-07-13 16:27:25",
        ),
        ("format_date($t$, '%Y-%m-%d')", {"t": "2024-07-13T23:30:00Z"}, "2024-07-13"),
        ("format_date($t$, '%H:%M')", {"t": 1720898845}, "19:27"),
        ("upper($x$) + lower($y$)", {"x": "ab", "y": "CD"}, "ABcd"),
        ("e164($p$)", {"p": "(555) 123-4567"}, "+15551234567"),
        ("e164($p$)", {"p": "020 7946 0018", "region": "GB"}, "+442079460018"),
        ("e164($p$, 'GB')", {"p": "020 7946 0018"}, "+442079460018"),
        ("national($p$)", {"p": "+15551234567"}, "(555) 123-4567"),
        ("digits($p$)", {"p": "+1 (555) 123-4567"}, "15551234567"),
        ("default($a$, 'x')", {}, "x"),
        ("default($a$, 'x')", {"a": ""}, "x"),
        ("default($a$, 'x')", {"a": 0}, 0),
        ("map($code$, '1', 'delivered', '2', 'failed', 'unknown')", {"code": 2}, "failed"),
        ("map($code$, '1', 'delivered', '2', 'failed', 'unknown')", {"code": "9"}, "unknown"),
        ("map($code$, '1', 'delivered')", {"code": "9"}, UNSET),
        ("join(' ', [$first_name$, $last_name$])", {"first_name": "Ann"}, "Ann"),
        ("join(', ', $l$)", {"l": ["a", "b"]}, "a, b"),
        ("split($s$, ',')", {"s": "a,b"}, ["a", "b"]),
        ("split($s$)", {"s": "a  b"}, ["a", "b"]),
        ("replace($s$, '-', '')", {"s": "1-2-3"}, "123"),
        ("urlencode($s$)", {"s": "a b/c"}, "a%20b%2Fc"),
        ("base64($s$)", {"s": "user:pass"}, "dXNlcjpwYXNz"),
        ("pad($n$, 5)", {"n": 42}, "00042"),
        ("duration($d$, '%H:%M:%S')", {"d": 3725}, "01:02:05"),
        ("duration($d$, '%M:%S')", {"d": 3725}, "62:05"),
        ("duration($d$)", {"d": "59"}, "00:00:59"),
        ("str($n$) + '!'", {"n": 5}, "5!"),
        ("str($b$)", {"b": True}, "true"),
        ("int($s$) + 1", {"s": "41"}, 42),
        ("int($s$)", {"s": "3.9"}, 3),
        ("first($l$)", {"l": [1, 2]}, 1),
        ("last($l$)", {"l": [1, 2]}, 2),
        ("first($l$)", {"l": []}, UNSET),
        ("first($s$)", {"s": "solo"}, "solo"),
        ("len($l$)", {"l": [1, 2, 3]}, 3),
        ("len($l$)", {}, 0),
        ("'mms' if len($urls$) > 0 else 'message'", {"urls": ["u"]}, "mms"),
        ("'mms' if len($urls$) > 0 else 'message'", {}, "message"),
        ("$a$ // 2 + $a$ % 2 - 1 / 2", {"a": 7}, 3.5),
        ("not $a$ and $b$ or 'z'", {"a": False, "b": ""}, "z"),
        ("$a$ in ['x', 'y']", {"a": "y"}, True),
        ("$a$ not in ['x', 'y']", {"a": "y"}, False),
        ("1 < $a$ <= 3", {"a": 3}, True),
        ("[$a$, 2][0]", {"a": 1}, 1),
        ("$o$['id']", {"o": {"id": 9}}, 9),
        ("$l$[5]", {"l": [1]}, UNSET),
        ("'US$' + str($amount$)", {"amount": 3}, "US$3"),
        ("$Instance URL$ + '/x'", {"Instance URL": "https://h"}, "https://h/x"),
        ("quote($s$, 'soql')", {"s": "O'Brien"}, "O\\'Brien"),
        ("quote($s$, 'odata')", {"s": "O'Brien"}, "O''Brien"),
        ("quote($s$, 'sql')", {"s": "O'Brien"}, "O''Brien"),
    ],
)
def test_evaluate(expression: str, values: dict, expected: object) -> None:
    assert evaluate(expression, values) == expected


def test_brace_placeholders_in_expressions() -> None:
    assert evaluate("{call_duration} * 2", {"call_duration": 3}, "{}") == 6
    assert evaluate("'{x}' + {y}", {"y": "!"}, "{}") == "{x}!"


@pytest.mark.parametrize(
    "expression",
    [
        "$a$ + 1",
        "upper($a$)",
        "$a$ == 'x'",
        "'x' if $a$ == 1 else 'y'",
        "not $a$",
        "-$a$",
        "format_date($a$, '%Y')",
        "e164($a$)",
        "$a$[0]",
    ],
)
def test_unset_inputs_give_unset(expression: str) -> None:
    assert evaluate(expression, {}) is UNSET
    assert evaluate(expression, {"a": None}) is UNSET


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("$a$.__class__", "attribute access"),
        ("__import__('os')", "unknown function __import__()"),
        ("open('/etc/passwd')", "unknown function open()"),
        ("{'a': 1}", "dict literals"),
        ("[x for x in $l$]", "comprehensions"),
        ("f'{1}'", "f-strings"),
        ("2 ** 1000000", "**"),
        ("lambda: 1", "lambda"),
        ("x", "unknown name 'x'"),
        ("(y := 1)", "assignment"),
        ("$a$; $b$", "syntax error"),
    ],
)
def test_forbidden_constructs(expression: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=re.escape(message)):
        evaluate(expression, {"a": 1, "l": [1]})


def test_expression_size_and_cost_are_bounded() -> None:
    with pytest.raises(ExpressionError, match="longer than"):
        evaluate("1 + " * MAX_EXPRESSION_LENGTH + "1", {})
    with pytest.raises(ExpressionError, match="too complex"):
        evaluate("+".join(["1"] * 400), {})
    with pytest.raises(ExpressionError):
        evaluate("'x' * 100000000", {})
    with pytest.raises(ExpressionError):
        evaluate("$s$ * 1000 * 1000", {"s": "abc"})
    with pytest.raises(ExpressionError, match="text formatting"):
        evaluate("'%999999999d' % 1", {})
    with pytest.raises(ExpressionError, match="width"):
        evaluate("pad(1, 100000000)", {})
    with pytest.raises(ExpressionError, match="longer than"):
        evaluate("replace($s$, 'a', $big$)", {"s": "a" * 1000, "big": "b" * 1000})
    # Repeating a list counts what its elements hold, not only its own length.
    started = time.monotonic()
    with pytest.raises(ExpressionError, match="larger than"):
        evaluate("len(str([[0] * 6000] * 6000))", {})
    with pytest.raises(ExpressionError, match="larger than"):
        evaluate("[[0] * 99999] * 99999", {})
    with pytest.raises(ExpressionError, match="larger than"):
        evaluate("[$s$] * 1000", {"s": "x" * 1000})
    # Text built by str, upper and lower is capped like every other text.
    with pytest.raises(ExpressionError, match="larger than"):
        evaluate("str([$s$, $s$])", {"s": "x" * 60_000})
    with pytest.raises(ExpressionError, match="longer than"):
        evaluate("upper($s$)", {"s": "\u00df" * 60_000})  # each ß becomes SS
    with pytest.raises(ExpressionError, match="longer than"):
        evaluate("lower(str($l$))", {"l": list(range(30_000))})
    assert time.monotonic() - started < 2
    assert evaluate("len([[0] * 100] * 100)", {}) == 100
    assert evaluate("upper('abc') + str([1, 2])", {}) == "ABC[1,2]"


def test_runtime_failures_are_expression_errors_with_pointer() -> None:
    with pytest.raises(ExpressionError) as caught:
        evaluate("$a$ / 0", {"a": 1}, pointer="/variables/v")
    assert caught.value.problems[0].pointer == "/variables/v"
    with pytest.raises(ExpressionError, match="not an ISO 8601 date"):
        evaluate("format_date($a$, '%Y')", {"a": "yesterday"})
    with pytest.raises(ExpressionError, match="unknown dialect"):
        evaluate("quote($a$, 'mysql')", {"a": "x"})


def test_expression_problems_reports_unknown_names() -> None:
    assert expression_problems("$a$ + $b$", "$", {"a"}) == ["unknown placeholder $b$"]
    assert expression_problems("$a$ +", "$") == ["syntax error: invalid syntax"]


def test_compute_variables_uses_earlier_variables_and_drops_unset() -> None:
    data = json.loads(crm_seed_spec_text())
    data["variables"] = {
        "title": "'Call ' + $minutes$",
        "minutes": "str($call_duration$ // 60)",
        "zoho_start": "format_date($call_start$, '%Y-%m-%d %H:%M:%S')",
    }
    spec = load_spec(data)
    assert compute_variables(spec, {"call_duration": 125}) == {
        "minutes": "2",
        "title": "Call 2",
    }


# --- quoting never lets a value out of its literal ------------------------------------------


def parse_soql_literal(literal: str) -> str:
    """Decode a single-quoted SOQL string literal; fail if a quote ends it early."""
    assert literal[0] == "'" and literal[-1] == "'"
    body, out, i = literal[1:-1], [], 0
    escapes = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1]
            out.append(escapes.get(nxt, nxt))
            i += 2
            continue
        assert ch != "'", "an unescaped quote would close the literal"
        out.append(ch)
        i += 1
    return "".join(out)


def parse_doubled_quote_literal(literal: str) -> str:
    """Decode an OData / ANSI SQL literal, where '' is a quote."""
    assert literal[0] == "'" and literal[-1] == "'"
    body = literal[1:-1]
    assert "'" not in body.replace("''", ""), "a lone quote would close the literal"
    return body.replace("''", "'")


@given(text=st.text())
def test_soql_quote_round_trips(text: str) -> None:
    literal = evaluate("\"'\" + quote($s$, 'soql') + \"'\"", {"s": text})
    assert parse_soql_literal(literal) == text


@given(text=st.text())
def test_odata_quote_round_trips(text: str) -> None:
    assert parse_doubled_quote_literal("'" + quote_literal(text, "odata") + "'") == text


@given(text=st.text())
def test_sql_quote_round_trips(text: str) -> None:
    literal = evaluate("\"'\" + quote($s$, 'sql') + \"'\"", {"s": text})
    assert parse_doubled_quote_literal(literal) == text


@given(value=st.integers(min_value=0, max_value=10**6))
def test_duration_round_trips(value: int) -> None:
    hours, minutes, seconds = (int(p) for p in evaluate("duration($d$)", {"d": value}).split(":"))
    assert hours * 3600 + minutes * 60 + seconds == value
