"""The shared sandbox machinery: recording, failure injection, admin API, lifecycle."""

from __future__ import annotations

import time
from typing import ClassVar

import pytest
import requests

from integrations.sandbox.base import (
    SandboxRequest,
    SandboxResponse,
    SandboxServer,
    json_response,
    phones_match,
    require_loopback_url,
    route,
)
from integrations.sandbox.recorder import RecorderSandbox


class EchoSandbox(SandboxServer):
    """A minimal imitation for testing the base class."""

    name: ClassVar[str] = "echo"
    tunables: ClassVar[tuple[str, ...]] = ("greeting",)

    def __init__(self) -> None:
        self.greeting = "hello"
        super().__init__()

    @route("GET", "/things/<thing_id>")
    def thing(self, request: SandboxRequest, thing_id: str) -> SandboxResponse:
        return json_response({"id": thing_id, "greeting": self.greeting})

    @route("GET", "/things/special")
    def special(self, request: SandboxRequest) -> SandboxResponse:
        return json_response({"special": True})

    @route("POST", "/echo")
    def echo(self, request: SandboxRequest) -> SandboxResponse:
        return json_response(
            {
                "json": request.json,
                "form": request.form,
                "files": {
                    name: [[f.filename, f.size] for f in files]
                    for name, files in request.files.items()
                },
            }
        )

    @route("GET", "/crash")
    def crash(self, request: SandboxRequest) -> SandboxResponse:
        raise RuntimeError("boom")


@pytest.fixture
def echo():
    with EchoSandbox() as server:
        yield server


def test_binds_loopback_on_a_random_port(echo: EchoSandbox) -> None:
    assert echo.url.startswith("http://127.0.0.1:")
    assert echo.port > 0
    assert requests.get(echo.url + "/things/7", timeout=5).json()["id"] == "7"


def test_refuses_to_bind_a_non_loopback_address() -> None:
    with pytest.raises(ValueError, match="loopback"):
        SandboxServer(host="0.0.0.0")


def test_literal_route_wins_over_pattern(echo: EchoSandbox) -> None:
    assert requests.get(echo.url + "/things/special", timeout=5).json() == {"special": True}


def test_unknown_path_is_404_and_wrong_method_is_405(echo: EchoSandbox) -> None:
    assert requests.get(echo.url + "/nope", timeout=5).status_code == 404
    response = requests.delete(echo.url + "/echo", timeout=5)
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"


def test_handler_crash_answers_500_naming_the_bug(echo: EchoSandbox) -> None:
    response = requests.get(echo.url + "/crash", timeout=5)
    assert response.status_code == 500
    assert "boom" in response.json()["error"]["message"]


def test_records_method_path_query_headers_and_parsed_bodies(echo: EchoSandbox) -> None:
    requests.post(echo.url + "/echo?a=1&a=2", json={"x": 1}, headers={"X-Test": "yes"}, timeout=5)
    requests.post(echo.url + "/echo", data={"field": "value"}, timeout=5)
    recorded = echo.requests_to("/echo")
    assert len(recorded) == 2
    first, second = recorded
    assert first.method == "POST"
    assert first.query == {"a": ["1", "2"]}
    assert first.header("x-test") == "yes"
    assert first.json == {"x": 1}
    assert first.body == b'{"x": 1}'
    assert first.time > 0
    assert second.form == {"field": ["value"]}
    assert echo.last("/echo") is second
    assert echo.requests_to("/ech*") == recorded
    echo.clear()
    assert echo.requests == []


def test_multipart_upload_is_received_whole(echo: EchoSandbox) -> None:
    content = bytes(range(256)) * 4096  # 1 MiB with every byte value, CR and LF included
    response = requests.post(
        echo.url + "/echo",
        files={"file": ("call.wav", content, "audio/wav")},
        data={"note": "hello"},
        timeout=10,
    )
    assert response.json()["files"] == {"file": [["call.wav", len(content)]]}
    assert response.json()["form"] == {"note": ["hello"]}
    assert echo.last("/echo").files["file"][0].content == content


def test_chunked_request_body_is_read(echo: EchoSandbox) -> None:
    def chunks():
        yield b'{"chunked": '
        yield b"true}"

    response = requests.post(
        echo.url + "/echo", data=chunks(), headers={"Content-Type": "application/json"}, timeout=5
    )
    assert response.json()["json"] == {"chunked": True}


def test_fail_next_answers_n_times_then_recovers(echo: EchoSandbox) -> None:
    echo.fail_next("/things", status=503, times=2, body={"down": True}, headers={"X-A": "b"})
    first = requests.get(echo.url + "/things/1", timeout=5)
    second = requests.get(echo.url + "/things/1", timeout=5)
    third = requests.get(echo.url + "/things/1", timeout=5)
    assert [first.status_code, second.status_code, third.status_code] == [503, 503, 200]
    assert first.json() == {"down": True}
    assert first.headers["X-A"] == "b"
    recorded = echo.requests_to("/things/1")
    assert [r.injected for r in recorded] == ["fail", "fail", None]
    assert [r.status for r in recorded] == [503, 503, 200]


def test_fail_next_only_matches_its_prefix_and_method(echo: EchoSandbox) -> None:
    echo.fail_next("/things", method="POST")
    assert requests.get(echo.url + "/things/1", timeout=5).status_code == 200
    echo.fail_next("/other")
    assert requests.get(echo.url + "/things/1", timeout=5).status_code == 200


def test_fail_until_cleared(echo: EchoSandbox) -> None:
    echo.fail_next("/things", times=None)
    for _ in range(3):
        assert requests.get(echo.url + "/things/1", timeout=5).status_code == 500
    echo.clear_injections()
    assert requests.get(echo.url + "/things/1", timeout=5).status_code == 200


def test_rate_limit_answers_429_with_retry_after(echo: EchoSandbox) -> None:
    echo.rate_limit_next("/things", retry_after=7)
    limited = requests.get(echo.url + "/things/1", timeout=5)
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "7"
    assert requests.get(echo.url + "/things/1", timeout=5).status_code == 200


def test_delay_holds_the_answer(echo: EchoSandbox) -> None:
    echo.delay_next("/things", 0.4)
    started = time.monotonic()
    assert requests.get(echo.url + "/things/1", timeout=5).status_code == 200
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    requests.get(echo.url + "/things/1", timeout=5)
    assert time.monotonic() - started < 0.3


def test_delay_makes_a_client_timeout(echo: EchoSandbox) -> None:
    echo.delay_next("/things", 1.0)
    with pytest.raises(requests.Timeout):
        requests.get(echo.url + "/things/1", timeout=0.2)


def test_admin_api_over_http(echo: EchoSandbox) -> None:
    admin = echo.url + "/_sandbox"
    index = requests.get(admin + "/", timeout=5).json()
    assert index["name"] == "echo"
    assert {"method": "POST", "path": "/echo"} in index["routes"]

    requests.post(admin + "/fail", json={"path": "/things", "status": 502, "times": 1}, timeout=5)
    assert requests.get(echo.url + "/things/1", timeout=5).status_code == 502
    requests.post(admin + "/rate_limit", json={"path": "/things", "retry_after": 3}, timeout=5)
    assert requests.get(echo.url + "/things/1", timeout=5).headers["Retry-After"] == "3"
    requests.post(admin + "/delay", json={"path": "/things", "seconds": 0.01}, timeout=5)
    assert requests.get(echo.url + "/things/1", timeout=5).status_code == 200

    listed = requests.get(admin + "/requests", params={"path": "/things/1"}, timeout=5).json()
    assert [r["status"] for r in listed["requests"]] == [502, 429, 200]
    assert all(not r["path"].startswith("/_sandbox") for r in listed["requests"])

    assert requests.post(admin + "/config", json={"greeting": "hi"}, timeout=5).ok
    assert requests.get(echo.url + "/things/1", timeout=5).json()["greeting"] == "hi"
    assert requests.post(admin + "/config", json={"nope": 1}, timeout=5).status_code == 400

    requests.post(admin + "/reset", timeout=5)
    assert echo.requests == []
    assert echo.greeting == "hello"


def test_clock_moves_forward(echo: EchoSandbox) -> None:
    before = echo.now()
    echo.advance_clock(3600)
    assert echo.now() - before >= 3600
    echo.reset()
    assert echo.now() - before < 60


def test_stop_releases_the_port() -> None:
    server = EchoSandbox().start()
    port = server.port
    server.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/things/1", timeout=2)


def test_recorder_accepts_anything() -> None:
    with RecorderSandbox() as recorder:
        response = requests.put(recorder.url + "/any/path?x=1", data=b"raw", timeout=5)
        assert response.json() == {"ok": True}
        assert recorder.last("/any/path").body == b"raw"


def test_helpers_refuse_non_loopback_urls() -> None:
    require_loopback_url("http://127.0.0.1:9/x")
    require_loopback_url("http://localhost/x")
    for url in ("http://example.com/x", "http://10.0.0.1/x", "ftp://127.0.0.1/x"):
        with pytest.raises(ValueError):
            require_loopback_url(url)


@pytest.mark.parametrize(
    ("stored", "wanted", "expected"),
    [
        ("+1 (415) 555-0100", "+14155550100", True),
        ("415.555.0101", "+1 415 555 0101", True),
        ("001 212 555 0199", "+12125550199", True),
        ("+44 20 7946 0958", "+442079460958", True),
        ("(415) 555-0142", "+14155550100", False),
        ("", "+14155550100", False),
    ],
)
def test_phones_match(stored: str, wanted: str, expected: bool) -> None:
    assert phones_match(stored, wanted) is expected


def test_stop_cuts_idle_keep_alive_connections() -> None:
    server = EchoSandbox().start()
    with requests.Session() as session:
        assert session.get(server.url + "/things/1", timeout=5).ok
        assert session.get(server.url + "/things/2", timeout=5).ok  # same connection
        server.stop()
        with pytest.raises(requests.ConnectionError):
            session.get(server.url + "/things/3", timeout=2)
