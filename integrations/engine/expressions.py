"""Safe expressions for `variables`, `outputs`, `filter`, `when` and webhook `event_type`.

The language (DESIGN 4.3, 4.8, 4.9) is a small subset of Python evaluated by simpleeval:
`+ - * / // %`, comparisons (`== != < <= > >= in not in`), `and or not`, `A if c else B`,
list literals, string and number literals, subscripts, and the functions in `FUNCTIONS`.
Values are written as placeholders (`$call_duration$`, or `{call_duration}` under
`"var_char": "{}"`); a bare name is an error. There is no attribute access, no power operator,
no dict or set literals (they would collide with `{}` placeholders), no comprehensions or
f-strings, expressions are at most `MAX_EXPRESSION_LENGTH` characters and `MAX_NODES` syntax
nodes, and strings built at run time are capped at `MAX_TEXT_LENGTH` characters (a repeated
list at as many elements, counting what nested lists hold).

Unset values propagate: an operator, comparison or ordinary function with an unset (or null)
operand gives `UNSET`, so a variable whose inputs are missing is itself missing and never an
error at call time. `default`, `join`, `first`, `last`, `len` and boolean `and`/`or` see unset
values (UNSET is falsy) and are how an expression copes with them.

Errors: `ExpressionError` (a `SpecError`) for a malformed expression, an unknown function or
name, a wrong number of arguments, or a failure while evaluating (a type mismatch, a division
by zero, a date that is not ISO 8601).
"""

from __future__ import annotations

import ast
import base64 as base64_codec
import datetime as dt
import functools
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote as url_quote

import phonenumbers
import simpleeval

from integrations.engine.errors import Problem, SpecError
from integrations.engine.templating import UNSET, to_text

if TYPE_CHECKING:
    from integrations.engine.spec import Spec

__all__ = [
    "FUNCTIONS",
    "MAX_EXPRESSION_LENGTH",
    "MAX_NODES",
    "MAX_TEXT_LENGTH",
    "CompiledExpression",
    "ExpressionError",
    "compile_expression",
    "compute_variables",
    "evaluate",
    "expression_problems",
    "order_variables",
    "quote_literal",
]

MAX_EXPRESSION_LENGTH: Final = 2000
MAX_NODES: Final = 300
MAX_TEXT_LENGTH: Final = 100_000
_MAX_PAD_WIDTH: Final = 1000
_MAX_FORMAT_LENGTH: Final = 200
DEFAULT_REGION: Final = "US"


class ExpressionError(SpecError):
    """An expression is malformed, names something unknown, or failed while evaluating."""


# --------------------------------------------------------------------------------------------
# Functions


def _check_text(text: str) -> str:
    if len(text) > MAX_TEXT_LENGTH:
        raise ExpressionError(f"result longer than {MAX_TEXT_LENGTH} characters")
    return text


def _size(value: Any, limit: int = MAX_TEXT_LENGTH) -> int:
    """What a value holds: characters of text plus one per element, through nested lists.

    Counting stops once it passes `limit` (the cost of counting is bounded too). A list that
    repeats one inner list counts the inner list each time, as `str()` would write it.
    """
    total = 0
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str | bytes):
            total += len(item)
        elif isinstance(item, list | tuple | dict):
            children = list(item.items()) if isinstance(item, dict) else item
            total += 1
            if total + len(children) > limit:
                return total + len(children)
            pending.extend(children)
        else:
            total += 1
        if total > limit:
            return total
    return total


def _too_large() -> ExpressionError:
    return ExpressionError(f"result larger than {MAX_TEXT_LENGTH} characters or elements")


def _missing(value: Any) -> bool:
    return value is UNSET or value is None


def _strict(function: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a function so any unset/null argument makes its result UNSET."""

    @functools.wraps(function)
    def wrapper(*args: Any) -> Any:
        if any(_missing(a) for a in args):
            return UNSET
        return function(*args)

    return wrapper


def _parse_datetime(value: Any) -> dt.datetime:
    """ISO 8601 text or a Unix timestamp (seconds, or milliseconds when that large) → UTC."""
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if abs(value) > 100_000_000_000 else value
        moment = dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
    elif isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ExpressionError(f"{value!r} is not an ISO 8601 date") from None
    else:
        raise ExpressionError(f"{value!r} is not a date")
    if moment.tzinfo is None:
        # The portal's dates are UTC; a naive one from a third party is taken as UTC too.
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def _format_date(value: Any, fmt: str = "%Y-%m-%dT%H:%M:%SZ") -> str:
    fmt = to_text(fmt)
    if len(fmt) > _MAX_FORMAT_LENGTH:
        raise ExpressionError("format_date: format too long")
    return _parse_datetime(value).strftime(fmt)


def _duration(seconds: Any, fmt: str = "%H:%M:%S") -> str:
    """Format a number of seconds: %H hours, %M minutes, %S seconds, %% a percent sign.

    The largest unit present is not wrapped (3725 s as "%M:%S" is "62:05").
    """
    fmt = to_text(fmt)
    if len(fmt) > _MAX_FORMAT_LENGTH:
        raise ExpressionError("duration: format too long")
    total = int(_to_number(seconds))
    sign = "-" if total < 0 else ""
    total = abs(total)
    if "%H" in fmt:
        hours, rest = divmod(total, 3600)
        minutes, secs = divmod(rest, 60)
    elif "%M" in fmt:
        hours = 0
        minutes, secs = divmod(total, 60)
    else:
        hours, minutes, secs = 0, 0, total
    fields = {"H": hours, "M": minutes, "S": secs}

    def replace(match: re.Match[str]) -> str:
        code = match.group(1)
        return "%" if code == "%" else f"{fields[code]:02d}"

    return sign + re.sub(r"%([HMS%])", replace, fmt)


def _to_number(value: Any) -> int | float:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return value
    text = to_text(value).strip()
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise ExpressionError(f"{value!r} is not a number") from None


def _to_int(value: Any) -> int:
    number = _to_number(value)
    if isinstance(number, float) and not number.is_integer():
        return int(number)  # truncates toward zero, like Python's int()
    return int(number)


def _parse_phone(value: Any, region: str) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(to_text(value), region)
    except phonenumbers.NumberParseException:
        return None


def _e164(value: Any, region: str) -> str:
    number = _parse_phone(value, region)
    if number is None:
        return to_text(value)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _national(value: Any, region: str) -> str:
    number = _parse_phone(value, region)
    if number is None:
        return to_text(value)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)


def _digits(value: Any) -> str:
    return "".join(ch for ch in to_text(value) if ch.isdigit())


def _default(*args: Any) -> Any:
    """The first argument that is set, not null and not ""; UNSET if none is."""
    for arg in args:
        if not _missing(arg) and arg != "":
            return arg
    return UNSET


def _map(value: Any, *pairs: Any) -> Any:
    """map(value, k1, v1, k2, v2, ..., [default]): keys match by equality or by their text."""
    if _missing(value):
        return pairs[-1] if len(pairs) % 2 == 1 else UNSET
    for index in range(0, len(pairs) - 1, 2):
        key = pairs[index]
        if key == value or to_text(key) == to_text(value):
            return pairs[index + 1]
    return pairs[-1] if len(pairs) % 2 == 1 else UNSET


def _join(separator: Any, items: Any) -> Any:
    """join(sep, list): unset, null and "" items are skipped (a missing last name adds no space)."""
    if isinstance(separator, list | tuple) and not isinstance(items, list | tuple):
        separator, items = items, separator  # join(list, sep) is a common slip; accept it
    if _missing(items):
        return UNSET
    if not isinstance(items, list | tuple):
        items = [items]
    parts = [to_text(item) for item in items if not _missing(item) and item != ""]
    return _check_text(to_text(separator).join(parts))


def _split(text: Any, separator: Any = None) -> list[str]:
    separator = None if _missing(separator) else to_text(separator)
    if separator == "":
        raise ExpressionError("split: empty separator")
    return to_text(text).split(separator)


def _replace(text: Any, old: Any, new: Any) -> str:
    old_text = to_text(old)
    if old_text == "":
        raise ExpressionError("replace: empty search text")
    source = to_text(text)
    new_text = to_text(new)
    # Bound the result before building it.
    if len(source) + source.count(old_text) * max(0, len(new_text) - len(old_text)) > (
        MAX_TEXT_LENGTH
    ):
        raise ExpressionError(f"result longer than {MAX_TEXT_LENGTH} characters")
    return source.replace(old_text, new_text)


_SOQL_ESCAPES: Final = {
    "\\": "\\\\",
    "'": "\\'",
    '"': '\\"',
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}


def quote_literal(text: str, dialect: str) -> str:
    """Escape text for use inside a single-quoted string literal of a query language.

    * `soql` (Salesforce): backslash escapes for `\\ ' "` and control characters
      (https://developer.salesforce.com/docs/atlas.en-us.soql_sosl.meta/soql_sosl/sforce_api_calls_soql_select_quotedstringescapes.htm).
    * `odata` (OData v4 URL conventions) and `sql` (ANSI SQL, where a backslash is an
      ordinary character): a quote is doubled.

    The result never contains a quote that could close the literal. Returns the text without
    the surrounding quotes: the spec writes `'...'` itself.
    """
    if dialect == "soql":
        return "".join(_SOQL_ESCAPES.get(ch, ch) for ch in text)
    if dialect in ("odata", "sql"):
        return text.replace("'", "''")
    raise ExpressionError(f"quote: unknown dialect {dialect!r} (expected soql, odata or sql)")


def _quote(text: Any, dialect: Any) -> str:
    return _check_text(quote_literal(to_text(text), to_text(dialect)))


def _urlencode(text: Any) -> str:
    return url_quote(to_text(text), safe="")


def _base64(value: Any) -> str:
    data = value if isinstance(value, bytes) else to_text(value).encode("utf-8")
    return _check_text(base64_codec.b64encode(data).decode("ascii"))


def _pad(value: Any, width: Any, fill: Any = "0") -> str:
    width = _to_int(width)
    if width > _MAX_PAD_WIDTH:
        raise ExpressionError(f"pad: width above {_MAX_PAD_WIDTH}")
    fill_text = to_text(fill)
    if len(fill_text) != 1:
        raise ExpressionError("pad: fill must be one character")
    return to_text(value).rjust(width, fill_text)


def _first(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return value[0] if value else UNSET
    return value


def _last(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return value[-1] if value else UNSET
    return value


def _len(value: Any) -> int:
    # The length of nothing is zero, so `len($urls$) > 0` works when no media was sent.
    if _missing(value):
        return 0
    if isinstance(value, list | tuple | dict | str):
        return len(value)
    return len(to_text(value))


def _str(value: Any) -> str:
    if _size(value) > MAX_TEXT_LENGTH:
        raise _too_large()  # refused before writing it out
    return _check_text(to_text(value))


def _upper(value: Any) -> str:
    return _check_text(_str(value).upper())


def _lower(value: Any) -> str:
    return _check_text(_str(value).lower())


# name -> (function, minimum arguments, maximum arguments or None for any)
_STATIC_FUNCTIONS: Final[dict[str, tuple[Callable[..., Any], int, int | None]]] = {
    "upper": (_strict(_upper), 1, 1),
    "lower": (_strict(_lower), 1, 1),
    "format_date": (_strict(_format_date), 1, 2),
    "digits": (_strict(_digits), 1, 1),
    "default": (_default, 1, None),
    "map": (_map, 2, None),
    "join": (_join, 2, 2),
    "split": (_strict(_split), 1, 2),
    "replace": (_strict(_replace), 3, 3),
    "quote": (_strict(_quote), 2, 2),
    "urlencode": (_strict(_urlencode), 1, 1),
    "base64": (_strict(_base64), 1, 1),
    "pad": (_strict(_pad), 2, 3),
    "duration": (_strict(_duration), 1, 2),
    "str": (_strict(_str), 1, 1),
    "int": (_strict(_to_int), 1, 1),
    "first": (_first, 1, 1),
    "last": (_last, 1, 1),
    "len": (_len, 1, 1),
}
# Phone functions read the org's region from the values; an explicit second argument wins.
_PHONE_FUNCTIONS: Final = {"e164": (_e164, 1, 2), "national": (_national, 1, 2)}

FUNCTIONS: Final[frozenset[str]] = frozenset(_STATIC_FUNCTIONS) | frozenset(_PHONE_FUNCTIONS)
"""Names of the functions an expression may call."""


def _functions_for(region: str) -> dict[str, Callable[..., Any]]:
    functions = {name: spec[0] for name, spec in _STATIC_FUNCTIONS.items()}
    for name, (function, _low, _high) in _PHONE_FUNCTIONS.items():

        def bound(value: Any, region_arg: Any = None, _f: Callable[..., Any] = function) -> Any:
            if _missing(value):
                return UNSET
            return _f(value, to_text(region_arg) if region_arg else region)

        functions[name] = bound
    return functions


# --------------------------------------------------------------------------------------------
# Compilation: placeholders become identifiers, then a whitelist walk over the syntax tree.


@dataclass(frozen=True)
class CompiledExpression:
    """A checked expression: `names` are its placeholder names, `tree` its parsed body."""

    source: str
    tree: ast.expr
    names: tuple[str, ...]
    identifiers: Mapping[str, str]  # python identifier -> placeholder name


_ALLOWED_NODES: Final = (
    ast.Expression,
    ast.BoolOp,
    ast.BinOp,
    ast.UnaryOp,
    ast.IfExp,
    ast.Compare,
    ast.Call,
    ast.Constant,
    ast.List,
    ast.Tuple,
    ast.Name,
    ast.Subscript,
    ast.Slice,
    ast.Load,
    ast.And,
    ast.Or,
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Div,
    ast.FloorDiv,
    ast.Mod,
    ast.USub,
    ast.UAdd,
    ast.Not,
    ast.Eq,
    ast.NotEq,
    ast.Lt,
    ast.LtE,
    ast.Gt,
    ast.GtE,
    ast.In,
    ast.NotIn,
)

_NODE_NAMES: Final = {
    ast.Attribute: "attribute access",
    ast.Pow: "the ** operator",
    ast.Dict: "dict literals (use map(...))",
    ast.Set: "set literals",
    ast.JoinedStr: "f-strings",
    ast.ListComp: "comprehensions",
    ast.GeneratorExp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.Lambda: "lambda",
    ast.NamedExpr: "assignment",
    ast.Starred: "* unpacking",
}


def _substitute_placeholders(expression: str, var_char: str) -> tuple[str, dict[str, str]]:
    """Replace placeholders outside string literals by identifiers `__v0__`, `__v1__`, ...

    A `$` or brace inside a quoted string is literal text, so `'US$' + str($amount$)` works.
    """
    opener, closer = ("{", "}") if var_char == "{}" else ("$", "$")
    out: list[str] = []
    identifiers: dict[str, str] = {}
    by_name: dict[str, str] = {}
    i = 0
    length = len(expression)
    while i < length:
        ch = expression[i]
        if ch in ("'", '"'):
            triple = expression[i : i + 3] == ch * 3
            delimiter = ch * 3 if triple else ch
            j = i + len(delimiter)
            while j < length:
                if expression[j] == "\\":
                    j += 2
                    continue
                if expression.startswith(delimiter, j):
                    j += len(delimiter)
                    break
                j += 1
            else:
                raise ExpressionError("unterminated string literal")
            out.append(expression[i:j])
            i = j
            continue
        if ch == opener:
            end = expression.find(closer, i + 1)
            if end == -1:
                raise ExpressionError(f"unterminated placeholder at position {i}")
            name = expression[i + 1 : end]
            if not name or "\n" in name or "\r" in name:
                raise ExpressionError(f"empty or broken placeholder at position {i}")
            if name not in by_name:
                identifier = f"__v{len(by_name)}__"
                by_name[name] = identifier
                identifiers[identifier] = name
            out.append(f" {by_name[name]} ")
            i = end + 1
            continue
        if var_char == "{}" and ch == "}":
            raise ExpressionError(f"unmatched '}}' at position {i}")
        out.append(ch)
        i += 1
    return "".join(out), identifiers


@functools.lru_cache(maxsize=4096)
def compile_expression(expression: str, var_char: str = "$") -> CompiledExpression:
    """Parse and check an expression; cached.

    Raises ExpressionError for: too long, syntax errors, constructs outside the language,
    unknown functions, wrong argument counts, and bare names.
    """
    if not isinstance(expression, str):
        raise ExpressionError("an expression must be a string")
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(f"expression longer than {MAX_EXPRESSION_LENGTH} characters")
    if not expression.strip():
        raise ExpressionError("empty expression")
    python, identifiers = _substitute_placeholders(expression, var_char)
    try:
        tree = ast.parse(python.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"syntax error: {exc.msg}") from None
    nodes = list(ast.walk(tree))
    if len(nodes) > MAX_NODES:
        raise ExpressionError(f"expression too complex (more than {MAX_NODES} parts)")
    # Constructs outside the language first: "attribute access not allowed" says more about
    # `$note$.upper()` than a complaint about what is being called.
    for node in nodes:
        if not isinstance(node, _ALLOWED_NODES):
            what = _NODE_NAMES.get(type(node), type(node).__name__)
            raise ExpressionError(f"{what} not allowed in expressions")
    called = {id(node.func) for node in nodes if isinstance(node, ast.Call)}
    for node in nodes:
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id in identifiers:
                raise ExpressionError("only the named functions can be called")
            name = node.func.id
            if name not in FUNCTIONS:
                raise ExpressionError(
                    f"unknown function {name}() (known: {', '.join(sorted(FUNCTIONS))})"
                )
            if node.keywords:
                raise ExpressionError(f"{name}(): keyword arguments are not supported")
            low, high = {**_STATIC_FUNCTIONS, **_PHONE_FUNCTIONS}[name][1:]
            count = len(node.args)
            if count < low or (high is not None and count > high):
                expected = str(low) if low == high else f"{low} to {high if high else 'any'}"
                raise ExpressionError(f"{name}() takes {expected} argument(s), got {count}")
        elif isinstance(node, ast.Name) and node.id not in identifiers and id(node) not in called:
            raise ExpressionError(
                f"unknown name {node.id!r}: write a value as "
                f"{'{' + node.id + '}' if var_char == '{}' else '$' + node.id + '$'}"
                f" or text as '{node.id}'"
            )
    return CompiledExpression(
        source=expression,
        tree=tree.body,
        names=tuple(identifiers.values()),
        identifiers=identifiers,
    )


def expression_problems(
    expression: Any, var_char: str = "$", known_names: Iterable[str] | None = None
) -> list[str]:
    """Messages for everything wrong with an expression (empty when it is fine).

    With `known_names`, a placeholder naming anything else is reported too.
    """
    try:
        compiled = compile_expression(expression, var_char)
    except ExpressionError as exc:
        return [str(exc.problems[0].message)]
    except TypeError:
        return ["an expression must be a string"]
    if known_names is None:
        return []
    known = set(known_names)
    return [
        f"unknown placeholder {'{' + n + '}' if var_char == '{}' else '$' + n + '$'}"
        for n in compiled.names
        if n not in known
    ]


# --------------------------------------------------------------------------------------------
# Evaluation


def _propagating(function: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any) -> Any:
        if any(_missing(a) for a in args):
            return UNSET
        return function(*args)

    return wrapper


def _safe_mod(left: Any, right: Any) -> Any:
    # `'%999999999d' % 1` would format a gigabyte: % is arithmetic only.
    if isinstance(left, str | bytes):
        raise ExpressionError("% is for numbers, not text formatting")
    return operator.mod(left, right)


def _safe_mult(left: Any, right: Any) -> Any:
    # `[[0] * 6000] * 6000` is 36 million elements although the outer list has one: a
    # repetition is bounded by everything its operand holds, not only by its length.
    for sequence, count in ((left, right), (right, left)):
        if (
            isinstance(sequence, str | bytes | list | tuple)
            and isinstance(count, int)
            and count > 0
            and _size(sequence) * count > MAX_TEXT_LENGTH
        ):
            raise _too_large()
    return operator.mul(left, right)


def _safe_not(value: Any) -> Any:
    return UNSET if _missing(value) else not value


_OPERATORS: Final = {
    ast.Add: _propagating(simpleeval.safe_add),
    ast.Sub: _propagating(operator.sub),
    ast.Mult: _propagating(_safe_mult),
    ast.Div: _propagating(operator.truediv),
    ast.FloorDiv: _propagating(operator.floordiv),
    ast.Mod: _propagating(_safe_mod),
    ast.USub: _propagating(operator.neg),
    ast.UAdd: _propagating(operator.pos),
    ast.Not: _safe_not,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda x, y: operator.contains(y, x),
    ast.NotIn: lambda x, y: not operator.contains(y, x),
}


class _Evaluator(simpleeval.EvalWithCompoundTypes):
    """simpleeval configured for spec expressions: lists and tuples only, UNSET-aware."""

    def __init__(self, functions: dict[str, Callable[..., Any]], names: dict[str, Any]) -> None:
        super().__init__(operators=dict(_OPERATORS), functions=functions, names=names)
        # Everything not in the language is removed from the node table, so even a tree that
        # skipped `compile_expression` cannot reach attributes, f-strings or comprehensions.
        for node_type in (
            ast.Attribute,
            ast.Assign,
            ast.AugAssign,
            ast.Import,
            ast.JoinedStr,
            ast.FormattedValue,
            ast.Dict,
            ast.Set,
            ast.ListComp,
            ast.GeneratorExp,
            ast.DictComp,
            ast.keyword,
        ):
            self.nodes.pop(node_type, None)
        self.nodes[ast.Compare] = self._compare
        self.nodes[ast.IfExp] = self._if_expression
        self.nodes[ast.Subscript] = self._subscript

    def _subscript(self, node: ast.Subscript) -> Any:
        # A missing container, index or key is a missing value, like a missing response path.
        container = self._eval(node.value)
        key = self._eval(node.slice)
        if _missing(container) or _missing(key):
            return UNSET
        try:
            return container[key]
        except (IndexError, KeyError):
            return UNSET

    def _compare(self, node: ast.Compare) -> Any:
        left = self._eval(node.left)
        result: Any = True
        for operation, comparator in zip(node.ops, node.comparators, strict=True):
            right = self._eval(comparator)
            if _missing(left) or _missing(right):
                return UNSET
            result = self.operators[type(operation)](left, right)
            if not result:
                return False
            left = right
        return result

    def _if_expression(self, node: ast.IfExp) -> Any:
        test = self._eval(node.test)
        if test is UNSET:
            return UNSET
        return self._eval(node.body) if test else self._eval(node.orelse)


def evaluate(
    expression: str,
    values: Mapping[str, Any],
    var_char: str = "$",
    *,
    pointer: str = "",
) -> Any:
    """Evaluate an expression over `values` (a name → value mapping; missing names are unset).

    The phone functions use `values["region"]` (default "US"). Returns `UNSET` when the result
    depends on unset values. Raises ExpressionError (with `pointer`) when the expression is
    invalid or fails on the values given.
    """
    try:
        compiled = compile_expression(expression, var_char)
    except ExpressionError as exc:
        raise ExpressionError(Problem(pointer, exc.problems[0].message)) from None
    names: dict[str, Any] = {}
    for identifier, name in compiled.identifiers.items():
        value = values.get(name, UNSET)
        names[identifier] = UNSET if value is None else value
    region = to_text(values.get("region") or DEFAULT_REGION).upper()
    evaluator = _Evaluator(_functions_for(region), names)
    evaluator.expr = expression
    try:
        return evaluator._eval(compiled.tree)
    except ExpressionError as exc:
        raise ExpressionError(
            Problem(pointer, f"{expression!r}: {exc.problems[0].message}")
        ) from None
    except (
        simpleeval.InvalidExpression,
        ArithmeticError,
        TypeError,
        ValueError,
        IndexError,
        KeyError,
        RecursionError,
    ) as exc:
        raise ExpressionError(Problem(pointer, f"{expression!r} failed: {exc}")) from None


def order_variables(
    variables: Mapping[str, str], var_char: str = "$"
) -> tuple[list[str], list[list[str]]]:
    """Order variables so each comes after the variables it uses.

    Returns (order, cycles). Variables in a cycle are left out of the order; each cycle is
    listed as the names along it. Invalid expressions count as using nothing (validation
    reports them separately).
    """
    dependencies: dict[str, list[str]] = {}
    for name, expression in variables.items():
        try:
            used = compile_expression(expression, var_char).names
        except (ExpressionError, TypeError):
            used = ()
        dependencies[name] = [n for n in used if n in variables]

    order: list[str] = []
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = visiting, 2 = done

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            start = path.index(name)
            cycles.append([*path[start:], name])
            return
        state[name] = 1
        for dependency in dependencies[name]:
            visit(dependency, [*path, name])
        state[name] = 2
        order.append(name)

    for name in variables:
        visit(name, [])
    in_cycle = {n for cycle in cycles for n in cycle}
    return [n for n in order if n not in in_cycle], cycles


def compute_variables(spec: Spec, values: Mapping[str, Any]) -> dict[str, Any]:
    """Evaluate the spec's variables over `values`; returns only the variables that are set.

    Variables may use other variables (evaluated in dependency order). A variable whose inputs
    are unset is left out. Raises ExpressionError (pointer `/variables/<name>`) when one fails.
    """
    if not spec.variables:
        return {}
    context = dict(values)
    computed: dict[str, Any] = {}
    for name in spec.variable_order:
        result = evaluate(
            spec.variables[name], context, spec.var_char, pointer=f"/variables/{name}"
        )
        if result is UNSET:
            context.pop(name, None)
            continue
        computed[name] = result
        context[name] = result
    return computed
