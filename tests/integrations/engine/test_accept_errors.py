"""`accept_errors`: an error answer a method lists is a success that maps nothing.

Against `local_server` (tests/integrations/engine/conftest.py): the HTTP door, the request a
method renders, a spec's Install steps, and the validation of the key's shape.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import pytest

from integrations.engine.client import SpecClient
from integrations.engine.errors import IntegrationError
from integrations.engine.http import AttemptRecord, HttpSession, OutboundRequest
from integrations.engine.request import RenderedRequest, build_request
from integrations.engine.spec import load_spec, validate_spec
from tests.integrations.engine.conftest import LocalServer, Reply

ALREADY = {"status": 403, "body_contains": "PBX_ALREADY_ENABLED"}
ALREADY_BODY = {"message": "already enabled", "status": "error", "code": "PBX_ALREADY_ENABLED"}
DENIED_BODY = {"message": "not for your license", "status": "error", "code": "NO_PERMISSION"}


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def session(**kwargs: Any) -> HttpSession:
    kwargs.setdefault("allow_private_networks", True)
    kwargs.setdefault("sleep", Sleeps())
    return HttpSession(**kwargs)


def post(url: str, *accept: dict[str, Any]) -> OutboundRequest:
    return OutboundRequest(http_method="POST", url=url, json_body={}, accept_errors=list(accept))


# -- the HTTP door -------------------------------------------------------------------------


def test_a_matching_error_answer_is_a_success_marked_accepted(local_server: LocalServer) -> None:
    local_server.route("POST", "/integrate", Reply(403, ALREADY_BODY))
    attempts: list[AttemptRecord] = []

    response = session(on_attempt=attempts.append).send(
        post(local_server.url("/integrate"), ALREADY), method_name="Install"
    )

    assert response.status == 403
    assert response.accepted_error is True
    assert [a.error for a in attempts] == [None]  # the delivery log shows no failure


def test_a_2xx_is_not_marked_accepted(local_server: LocalServer) -> None:
    local_server.route("POST", "/integrate", Reply(200, {"code": "SUCCESS"}))
    response = session().send(post(local_server.url("/integrate"), ALREADY), method_name="M")
    assert response.accepted_error is False


def test_the_same_status_with_another_body_still_fails(local_server: LocalServer) -> None:
    local_server.route("POST", "/integrate", Reply(403, DENIED_BODY))

    with pytest.raises(IntegrationError) as caught:
        session().send(post(local_server.url("/integrate"), ALREADY), method_name="Install")

    assert caught.value.status == 403
    assert caught.value.permanent is True
    assert "NO_PERMISSION" in caught.value.message


def test_another_status_with_the_text_still_fails(local_server: LocalServer) -> None:
    local_server.route("POST", "/integrate", Reply(400, ALREADY_BODY))
    with pytest.raises(IntegrationError) as caught:
        session().send(post(local_server.url("/integrate"), ALREADY), method_name="Install")
    assert caught.value.status == 400


def test_without_body_contains_any_answer_with_the_status_is_accepted(
    local_server: LocalServer,
) -> None:
    local_server.route("DELETE", "/hook", Reply(404, "gone"))
    request = OutboundRequest(
        http_method="DELETE", url=local_server.url("/hook"), accept_errors=[{"status": 404}]
    )
    assert session().send(request, method_name="Uninstall").accepted_error is True


def test_any_one_item_matching_is_enough(local_server: LocalServer) -> None:
    local_server.route("POST", "/integrate", Reply(409, "duplicate: EXISTS"))
    request = post(
        local_server.url("/integrate"), ALREADY, {"status": 409, "body_contains": "EXISTS"}
    )
    assert session().send(request, method_name="M").accepted_error is True


def test_an_accepted_5xx_is_not_retried(local_server: LocalServer) -> None:
    local_server.route("PUT", "/x", Reply(503, "MAINTENANCE_DONE"))
    sleeps = Sleeps()
    request = OutboundRequest(
        http_method="PUT",
        url=local_server.url("/x"),
        json_body={},
        accept_errors=[{"status": 503, "body_contains": "MAINTENANCE_DONE"}],
    )

    response = session(sleep=sleeps, max_attempts=3).send(request, method_name="M")

    assert response.accepted_error is True
    assert response.attempts == 1
    assert len(local_server.requests_to("/x")) == 1
    assert sleeps == []


@dataclass
class BareRequest:
    """A request-like without `accept_errors` (read with getattr, so it still works)."""

    http_method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    query: list[tuple[str, str]] = field(default_factory=list)
    content_type: str | None = None
    json_body: Any | None = None
    form: list[tuple[str, str]] | None = None
    multipart: list[Any] | None = None
    timeout: float | None = None
    success_codes: list[int] | None = None
    retry_safe: bool = False
    redact: set[str] = field(default_factory=set)


def test_a_request_without_accept_errors_keeps_the_old_behaviour(
    local_server: LocalServer,
) -> None:
    local_server.route("GET", "/ok", Reply(200, {}))
    local_server.route("GET", "/denied", Reply(403, ALREADY_BODY))
    http = session()
    assert http.send(BareRequest("GET", local_server.url("/ok")), method_name="M").status == 200
    with pytest.raises(IntegrationError):
        http.send(BareRequest("GET", local_server.url("/denied")), method_name="M")


# -- specs -----------------------------------------------------------------------------------


def spec_document(**install_step: Any) -> dict[str, Any]:
    return {
        "id": "unit",
        "name": "Unit",
        "class": "crm",
        "properties": [{"name": "Base URL", "type": "url", "required": True}],
        "parameters": {"account_id": "string"},
        "resource_url": "$Base URL$",
        "API": {
            "FindContact": {
                "request_method": "GET",
                "request_path": "/contacts",
                "request_parameters": {"phone": "$phone$"},
                "response_map": {"records": [{"id": "$contact_id$"}]},
            }
        },
        "Install": [
            {
                "request_method": "POST",
                "request_path": "/integrate",
                "response_map": {"code": "$account_id$"},
                **install_step,
            },
            {"request_method": "POST", "request_path": "/register"},
        ],
    }


def test_build_request_carries_the_methods_accept_errors() -> None:
    spec = load_spec(spec_document(accept_errors=[ALREADY]))
    values = {"Base URL": "https://crm.example"}
    request = build_request(spec, spec.raw["Install"][0], values, pointer="/Install/0")
    assert request.accept_errors == [ALREADY]
    plain = build_request(spec, spec.raw["Install"][1], values, pointer="/Install/1")
    assert plain.accept_errors == []
    assert RenderedRequest(http_method="GET", url="https://x.example").accept_errors == []


def test_install_goes_on_past_an_accepted_error_and_maps_nothing(
    local_server: LocalServer,
) -> None:
    local_server.route("POST", "/integrate", Reply(403, ALREADY_BODY))
    local_server.route("POST", "/register", Reply(200, {}))
    client = SpecClient(
        load_spec(spec_document(accept_errors=[ALREADY])),
        properties={"Base URL": local_server.url("").rstrip("/")},
        allow_private_networks=True,
    )

    result = client.install()

    assert "account_id" not in result.values  # the error body's "code" is not captured
    assert len(local_server.requests_to("/register")) == 1


def test_install_without_accept_errors_fails_on_the_403(local_server: LocalServer) -> None:
    local_server.route("POST", "/integrate", Reply(403, ALREADY_BODY))
    client = SpecClient(
        load_spec(spec_document()),
        properties={"Base URL": local_server.url("").rstrip("/")},
        allow_private_networks=True,
    )
    with pytest.raises(IntegrationError):
        client.install()
    assert local_server.requests_to("/register") == []


@pytest.mark.parametrize(
    ("value", "pointer", "fragment"),
    [
        ("PBX_ALREADY_ENABLED", "/Install/0/accept_errors", "is not of type 'array'"),
        ([], "/Install/0/accept_errors", "non-empty"),
        ([{"body_contains": "X"}], "/Install/0/accept_errors/0", "'status' is a required"),
        ([{"status": "403"}], "/Install/0/accept_errors/0/status", "not of type 'integer'"),
        ([{"status": 200}], "/Install/0/accept_errors/0/status", "minimum of 300"),
        (
            [{"status": 403, "body_contains": 7}],
            "/Install/0/accept_errors/0/body_contains",
            "string",
        ),
        ([{"status": 403, "body": "X"}], "/Install/0/accept_errors/0/body", "unknown key"),
        ([ALREADY, dict(ALREADY)], "/Install/0/accept_errors/1", "same error answer as item 0"),
    ],
)
def test_a_wrong_accept_errors_is_reported_at_its_pointer(
    value: Any, pointer: str, fragment: str
) -> None:
    problems = validate_spec(spec_document(accept_errors=value))
    assert any(p.pointer == pointer and fragment in p.message for p in problems), problems


def test_an_accepted_status_already_in_success_codes_is_reported() -> None:
    document = spec_document(accept_errors=[{"status": 409}], success_codes=[200, 409])
    problems = validate_spec(document)
    assert [(p.pointer, p.message) for p in problems] == [
        ("/Install/0/accept_errors/0/status", "status 409 is already in success_codes")
    ]


def test_accept_errors_is_valid_in_an_api_step() -> None:
    document = spec_document()
    step = copy.deepcopy(document["API"]["FindContact"])
    step["accept_errors"] = [{"status": 404}]
    document["API"]["FindContact"] = [step]
    assert validate_spec(document) == []
