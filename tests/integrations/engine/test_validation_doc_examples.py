"""Worked examples of docs/spec-language.md, run through the engine against a local server.

Each test reads its example out of the reference itself, so the text and the engine cannot
drift apart: the `$$filter` escape (section 4) and the `merge` step mode (section 12).
"""

from __future__ import annotations

import json
import pathlib
import re
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from integrations.engine.client import SpecClient
from integrations.engine.spec import load_spec

DOC = pathlib.Path(__file__).resolve().parents[3] / "docs" / "spec-language.md"
_SPEC_BLOCK = re.compile(r"<!-- spec -->\s*```json\n(.*?)```", re.S)


class RawServer:
    """Records each request line exactly as sent; answers GET /contacts from `answers`."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.answers: dict[tuple[str, str], Any] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server.paths.append(self.path)
                query = urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query)
                body = json.dumps(
                    next(
                        (server.answers[pair] for pair in query if pair in server.answers),
                        {"data": []},
                    )
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def raw_server() -> Iterator[RawServer]:
    server = RawServer()
    yield server
    server.close()


def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def test_the_dollar_escape_example_sends_what_the_reference_says(raw_server: RawServer) -> None:
    found = re.search(
        r"```json\n(\"request_parameters\": \{\"\$\$filter\".*?)\n```\s*\nsends `(\?[^`]*)`",
        doc_text(),
    )
    assert found, "section 4's $$filter example is missing"
    fragment, documented_query = found.groups()
    spec = load_spec(
        "{"
        '"id": "escape-example", "name": "Escapes", "class": "crm",'
        '"properties": [{"name": "Base URL", "type": "url"}], "resource_url": "$Base URL$",'
        '"API": {"FindContact": {"request_method": "GET", "request_path": "/contacts",'
        f"{fragment}}}}}}}"
    )
    SpecClient(spec, properties={"Base URL": raw_server.url}, allow_private_networks=True).call(
        "FindContact", {}
    )
    assert raw_server.paths == ["/contacts" + documented_query]
    # An OData server reads the encoded keys as $filter and $top.
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(raw_server.paths[0]).query)
    assert query == {"$filter": ["LastName eq 'Doe'"], "$top": ["5"]}


def merge_example() -> str:
    blocks = _SPEC_BLOCK.findall(doc_text())
    return next(b for b in blocks if json.loads(b)["id"] == "merge-example")


def test_the_merge_example_adds_the_second_lookup_and_keeps_a_record_once(
    raw_server: RawServer,
) -> None:
    jane = {"id": "c-1", "name": "Jane Doe"}
    raw_server.answers[("phone", "+14155550100")] = {"data": [jane]}
    raw_server.answers[("mobile", "+14155550100")] = {
        "data": [{"id": "c-2", "name": "John Roe"}, jane]
    }
    client = SpecClient(
        load_spec(merge_example()),
        properties={"Base URL": raw_server.url, "API Key": "k"},
        allow_private_networks=True,
    )
    result = client.call("FindContact", {"phone": "+14155550100"})
    assert result.to_json() == [
        {"contact_id": "c-1", "contact_name": "Jane Doe"},
        {"contact_id": "c-2", "contact_name": "John Roe"},
    ]
    assert raw_server.paths == [
        "/contacts?phone=%2B14155550100",
        "/contacts?mobile=%2B14155550100",
    ]
    text = doc_text()
    assert "`GET /contacts?phone=%2B14155550100`" in text
    assert '`[{"contact_id": "c-1", "contact_name": "Jane Doe"}, {"contact_id": "c-2",' in text


def test_the_merge_example_when_the_first_lookup_finds_nothing(raw_server: RawServer) -> None:
    raw_server.answers[("mobile", "+14155550100")] = {"data": [{"id": "c-2", "name": "John Roe"}]}
    client = SpecClient(
        load_spec(merge_example()),
        properties={"Base URL": raw_server.url, "API Key": "k"},
        allow_private_networks=True,
    )
    result = client.call("FindContact", {"phone": "+14155550100"})
    assert result.to_json() == [{"contact_id": "c-2", "contact_name": "John Roe"}]


def test_with_then_instead_of_merge_only_the_second_lookup_remains(raw_server: RawServer) -> None:
    jane = {"id": "c-1", "name": "Jane Doe"}
    raw_server.answers[("phone", "+14155550100")] = {"data": [jane]}
    raw_server.answers[("mobile", "+14155550100")] = {"data": [{"id": "c-2", "name": "John Roe"}]}
    data = json.loads(merge_example())
    data["API"]["FindContact"][1]["mode"] = "then"
    client = SpecClient(
        load_spec(data),
        properties={"Base URL": raw_server.url, "API Key": "k"},
        allow_private_networks=True,
    )
    result = client.call("FindContact", {"phone": "+14155550100"})
    assert result.to_json() == [{"contact_id": "c-2", "contact_name": "John Roe"}]
