"""Placeholder rendering: typed values, single pass, URLs, headers, empty blocks."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from integrations.engine.errors import SpecError
from integrations.engine.templating import (
    UNSET,
    encode_path_segment,
    placeholder_names,
    render_header,
    render_json,
    render_text,
    render_url,
    template_problems,
    to_text,
)

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)


def test_placeholder_names_with_spaces_and_both_syntaxes() -> None:
    assert placeholder_names("$Instance URL$/api/$user_id$?x=$user_id$") == [
        "Instance URL",
        "user_id",
    ]
    assert placeholder_names("{Instance URL}/api/{user_id}", "{}") == ["Instance URL", "user_id"]
    assert placeholder_names("cost $$5 and $$6") == []
    assert placeholder_names("{{literal}} {x}", "{}") == ["x"]


def test_escapes_render_literal_delimiters() -> None:
    assert render_text("$$filter=Name eq '$name$'", {"name": "Ann"}) == "$filter=Name eq 'Ann'"
    assert render_text('{{"a": {n}}}', {"n": 1}, "{}") == '{"a": 1}'


def test_stray_delimiters_are_problems() -> None:
    assert template_problems("$filter=x") and template_problems("a } b", "{}")
    assert template_problems("$$filter=$x$") == []


def test_whole_value_placeholder_keeps_its_type() -> None:
    values = {"n": 5, "f": 1.5, "b": False, "o": {"a": [1]}, "l": [1, "x"], "z": None}
    template = {"n": "$n$", "f": "$f$", "b": "$b$", "o": "$o$", "l": "$l$", "z": "$z$"}
    assert render_json(template, values) == values


def test_placeholder_in_longer_string_renders_as_text() -> None:
    values = {"n": 5, "b": True, "o": {"a": 1}, "z": None}
    assert render_json("n=$n$ b=$b$ o=$o$ z=$z$", values) == 'n=5 b=true o={"a":1} z='


def test_unset_whole_value_removes_key_and_element() -> None:
    template = {"a": "$a$", "b": "$b$", "list": ["$a$", "$b$", "x"]}
    assert render_json(template, {"a": 1}) == {"a": 1, "list": [1, "x"]}


def test_unset_in_longer_string_renders_empty() -> None:
    assert render_json({"s": "Call with $name$."}, {}) == {"s": "Call with ."}


def test_empty_blocks_are_dropped_recursively() -> None:
    template = {
        "properties": {"firstname": "$first$"},
        "associations": [
            {
                "to": {"id": "$company_id$"},
                "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 1}],
            }
        ],
        "fixed": {"kind": "call"},
    }
    assert render_json(template, {"first": "Ann"}) == {
        "properties": {"firstname": "Ann"},
        "fixed": {"kind": "call"},
    }
    with_company = render_json(template, {"first": "Ann", "company_id": 7})
    assert with_company["associations"][0]["to"] == {"id": 7}
    # The root is never dropped.
    assert render_json({"a": {"b": "$x$"}}, {}) == {}


def test_partly_set_block_is_kept() -> None:
    template = {"who": {"id": "$id$", "name": "$name$"}}
    assert render_json(template, {"id": 3}) == {"who": {"id": 3}}


def test_keys_are_templates() -> None:
    assert render_json({"$Field$": "$v$"}, {"Field": "cf_1", "v": 2}) == {"cf_1": 2}
    assert render_json({"$Field$": "x"}, {}) == {}


def test_a_value_holding_a_placeholder_stays_literal() -> None:
    """A contact named "$secret$" is sent as that text, never as the secret's value."""
    values = {"name": "$secret$", "other": "{secret}", "secret": "SECRET"}
    assert render_text("Hi $name$", values) == "Hi $secret$"
    assert render_json({"n": "$name$", "s": "<$name$>"}, values) == {
        "n": "$secret$",
        "s": "<$secret$>",
    }
    assert render_text("Hi {other}", values, "{}") == "Hi {secret}"


def test_brace_syntax() -> None:
    assert render_json({"a": "{x}", "b": "id-{x}"}, {"x": 4}, "{}") == {"a": 4, "b": "id-4"}


def test_url_encodes_path_values_as_one_segment() -> None:
    url = render_url("/contacts/$id$/notes", {"id": "a/b?c#d e"})
    assert url == "/contacts/a%2Fb%3Fc%23d%20e/notes"


def test_dot_segments_cannot_climb() -> None:
    assert render_url("/contacts/$id$", {"id": ".."}) == "/contacts/%2E%2E"


def test_base_url_and_raw_names_are_inserted_as_written() -> None:
    values = {"Instance URL": "https://x.example.com/base", "id": "1/2"}
    assert (
        render_url("$Instance URL$/c/$id$", values, raw_names={"Instance URL"})
        == "https://x.example.com/base/c/1%2F2"
    )
    # A placeholder that starts a whole URL (request_url) is its base even without being named.
    assert render_url("$base$/c", {"base": "https://h/p"}, whole_url=True) == "https://h/p/c"
    # One that starts a request_path is a path segment like any other.
    assert render_url("$id$/c", {"id": "../a?b#"}) == "..%2Fa%3Fb%23/c"
    assert render_url("$a$/$b$", {"a": "https://h", "b": "x/y"}, encode=False) == "https://h/x/y"


def test_unset_url_value_is_a_spec_error_naming_it() -> None:
    with pytest.raises(SpecError) as caught:
        render_url("/contacts/$contact_id$/$other$", {}, pointer="/API/X/request_path")
    assert str(caught.value) == (
        "/API/X/request_path: no value for $contact_id$, $other$, which the URL needs"
    )


def test_header_injection_is_refused() -> None:
    with pytest.raises(SpecError, match="line break"):
        render_header("Bearer $t$", {"t": "x\r\nX-Evil: 1"}, header_name="Authorization")
    assert render_header("$t$", {}) is UNSET
    assert render_header("Bearer $t$", {"t": "abc"}) == "Bearer abc"


def test_unset_is_a_falsy_singleton() -> None:
    assert not UNSET and repr(UNSET) == "UNSET" and to_text(UNSET) == ""


# --- properties -----------------------------------------------------------------------------

names = st.text(
    alphabet=st.characters(blacklist_characters="$\r\n", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=12,
)


@given(value=st.text())
@example(value="$secret$")
@example(value="x $secret$ $$ y")
def test_rendering_is_single_pass(value: str) -> None:
    """A substituted value is never expanded again, whatever it contains."""
    values = {"a": value, "secret": "SECRET"}
    assert render_text("<$a$>", values) == f"<{value}>"
    rendered = render_json({"k": "$a$", "s": "x $a$ y"}, values)
    assert rendered == {"k": value, "s": f"x {value} y"}


@given(value=st.text())
@example(value="{b}")
@example(value="x {b} {{ y")
def test_single_pass_holds_for_brace_syntax(value: str) -> None:
    assert render_text("<{a}>", {"a": value, "b": "B"}, "{}") == f"<{value}>"


@given(value=st.text(min_size=1))
def test_path_encoding_round_trips(value: str) -> None:
    url = render_url("https://h.example/contacts/$id$/x", {"id": value})
    path = urlsplit(url).path
    segments = path.split("/")
    assert segments[:2] == ["", "contacts"] and segments[-1] == "x"
    assert len(segments) == 4  # the value stayed one segment
    assert unquote(segments[2]) == value
    assert segments[2] not in (".", "..")
    assert "?" not in url and "#" not in url


@given(value=st.text(min_size=1))
def test_a_value_that_starts_the_path_stays_one_segment(value: str) -> None:
    path = render_url("$id$/notes", {"id": value})
    assert "?" not in path and "#" not in path
    segments = path.split("/")
    assert len(segments) == 2 and segments[1] == "notes"  # the value stayed one segment
    assert unquote(segments[0]) == value
    assert segments[0] not in (".", "..")


@given(value=st.text())
def test_encoded_segment_has_only_safe_characters(value: str) -> None:
    encoded = encode_path_segment(value)
    assert all(ch.isascii() and (ch.isalnum() or ch in "-._~%") for ch in encoded)


@given(value=st.text())
def test_no_header_injection(value: str) -> None:
    try:
        rendered = render_header("Bearer $t$", {"t": value}, header_name="Authorization")
    except SpecError:
        assert any(ch in value for ch in "\r\n\x00")
    else:
        assert not any(ch in rendered for ch in "\r\n\x00")


@given(value=json_values)
def test_typed_values_round_trip(value: Any) -> None:
    """A whole-value placeholder gives back exactly the value, through JSON too."""
    rendered = render_json({"v": "$v$"}, {"v": value}, drop_empty_blocks=False)
    assert rendered == {"v": value}
    assert json.loads(json.dumps(rendered)) == json.loads(json.dumps({"v": value}))


@given(name=names, value=st.text())
def test_any_name_renders(name: str, value: str) -> None:
    assert render_text(f"[${name}$]", {name: value}) == f"[{value}]"
