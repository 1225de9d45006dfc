"""The contract every built-in spec keeps, as test classes each spec's test module subclasses.

`CrmContract` is what the portal relies on from any `crm` spec, checked against the spec's
sandbox: `Users` gives records with `user_id`; `FindContact` on a known number gives at least
one record with `contact_id` and `contact_name`, and on an unknown number an empty list (no
error); `CreateActivity`, when the spec has it, gives an `activity_id`; list methods print as
lists. `RecordedExchanges` replays the spec's recorded fixtures (`tests/fixtures/<spec id>/`):
the spec still renders the recorded request and maps the recorded response to the recorded
values, so a change to a spec that alters either shows up as a failing test.

`HttpDoorContract` is what every built-in spec (CRM and SMS alike) gets from the one HTTP door,
checked against the spec's sandbox: a 429 is waited out (`Retry-After`) and retried; a 5xx is
retried for an idempotent call (a lookup) and not for a write, so nothing is created twice; and
with private networks not allowed, the SSRF guard refuses 127.0.0.1, 10.0.0.1 and
169.254.169.254 before connecting (the sandbox sees nothing, and the loopback-only network
guard of tests/conftest.py fails the test on any other connection attempt).
`test_builtin_specs_valid.py` checks that every built-in spec has a subclass of it.

A subclass sets `spec_id` (and `replay_values`, the property values used to render recorded
requests) and, for `CrmContract`, provides a `crm` fixture returning a connected `CrmSetup`;
for `HttpDoorContract`, a `door` fixture returning a `DoorSetup`.
Like django-anymail's shared suites, these classes hold tests but are not collected on their
own (their names do not start with `Test`).
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import pytest

from integrations.engine.client import LIST_METHODS, SpecClient, request_summary
from integrations.engine.errors import IntegrationError
from integrations.engine.http import IDEMPOTENT_METHODS, HttpSession
from integrations.engine.mapping import map_response
from integrations.engine.request import build_request
from integrations.engine.spec import Spec
from integrations.sandbox.base import SandboxServer
from tests.integrations.specs.conftest import SleepRecorder, builtin_spec, recorded_exchanges


@dataclass
class CrmSetup:
    """A CRM spec's client, connected to its sandbox, and what the sandbox is seeded with.

    `known_phone` is an E.164 number of a seeded contact whose name is `known_name`;
    `unknown_phone` matches nobody; `activity_params` are the values of a call to log.
    """

    client: SpecClient
    server: SandboxServer
    known_phone: str
    known_name: str
    unknown_phone: str
    activity_params: dict[str, Any] = field(default_factory=dict)


class CrmContract:
    """What the portal relies on from every `crm` spec. Subclasses provide `crm`."""

    spec_id: ClassVar[str]

    @pytest.fixture
    def crm(self) -> CrmSetup:
        raise NotImplementedError("a CrmContract subclass provides the `crm` fixture")

    def test_spec_is_a_crm_with_find_contact(self) -> None:
        spec = builtin_spec(self.spec_id)
        assert spec.spec_class == "crm"
        assert spec.has_method("FindContact")
        assert spec.has_method("Users")

    def test_users_returns_records_with_user_id(self, crm: CrmSetup) -> None:
        result = crm.client.call("Users")

        assert result.records, "Users returned no records"
        assert all(record.get("user_id") for record in result.records)
        assert isinstance(result.to_json(), list)

    def test_find_contact_on_a_known_number_returns_the_contact(self, crm: CrmSetup) -> None:
        result = crm.client.call("FindContact", {"phone": crm.known_phone})

        assert len(result.records) >= 1
        assert all(r.get("contact_id") and r.get("contact_name") for r in result.records)
        assert crm.known_name in {r["contact_name"] for r in result.records}

    def test_find_contact_on_an_unknown_number_returns_no_record(self, crm: CrmSetup) -> None:
        result = crm.client.call("FindContact", {"phone": crm.unknown_phone})

        assert result.records == []
        assert result.to_json() == []

    def test_find_contact_prints_a_list_even_with_one_record(self, crm: CrmSetup) -> None:
        result = crm.client.call("FindContact", {"phone": crm.known_phone})

        assert isinstance(result.to_json(), list)
        assert "FindContact" in LIST_METHODS

    def test_create_activity_returns_an_activity_id(self, crm: CrmSetup) -> None:
        if not crm.client.has_method("CreateActivity"):
            pytest.skip(f"{self.spec_id} reports calls as events (no CreateActivity)")
        result = crm.client.call("CreateActivity", crm.activity_params)

        created = result.to_json()
        assert isinstance(created, dict)
        assert created.get("activity_id")


class Connect(Protocol):
    """Builds the spec's client on `session`, aimed at the sandbox or, given, at `base_url`.

    `base_url` replaces the spec's API address (its URL property); the client then holds a
    ready token, so the first request it sends is the call itself.
    """

    def __call__(self, session: HttpSession, base_url: str | None = None) -> SpecClient: ...


@dataclass
class DoorCall:
    """A spec method call the door tests make: `method` with `params` reaches the sandbox at
    `path` (an HTTP `path` prefix the sandbox can fail) and its result carries `result_key`."""

    method: str
    params: dict[str, Any]
    path: str
    result_key: str


@dataclass
class DoorSetup:
    """A spec's sandbox, how to connect to it, and its calls: `write` sends something (POST),
    `lookup`, when the spec has one, only reads (an idempotent method)."""

    server: SandboxServer
    connect: Connect
    write: DoorCall
    lookup: DoorCall | None = None

    def calls(self) -> list[DoorCall]:
        return [call for call in (self.lookup, self.write) if call is not None]


def _http_method(spec_id: str, call: DoorCall) -> str:
    return str(builtin_spec(spec_id).steps(call.method)[0]["request_method"]).upper()


class HttpDoorContract:
    """Retries and the SSRF guard, for every built-in spec. Subclasses provide `door`."""

    spec_id: ClassVar[str]
    private_addresses: ClassVar[tuple[str, ...]] = ("127.0.0.1", "10.0.0.1", "169.254.169.254")

    @pytest.fixture
    def door(self) -> DoorSetup:
        raise NotImplementedError("an HttpDoorContract subclass provides the `door` fixture")

    def test_the_door_calls_are_a_lookup_and_a_write(self, door: DoorSetup) -> None:
        if door.lookup is not None:
            assert _http_method(self.spec_id, door.lookup) in IDEMPOTENT_METHODS
        assert _http_method(self.spec_id, door.write) not in IDEMPOTENT_METHODS

    def test_a_429_is_waited_out_and_retried(self, door: DoorSetup) -> None:
        for call in door.calls():
            sleeps = SleepRecorder()
            door.server.clear()
            door.server.rate_limit_next(call.path, retry_after=2)
            client = door.connect(HttpSession(allow_private_networks=True, sleep=sleeps))

            result = client.call(call.method, call.params)

            assert result.first().get(call.result_key), call.method
            statuses = [r.status for r in door.server.requests_to(call.path)]
            assert len(statuses) == 2 and statuses[0] == 429, (call.method, statuses)
            assert statuses[1] is not None and 200 <= statuses[1] < 300, (call.method, statuses)
            assert len(sleeps.waits) == 1 and sleeps.waits[0] >= 2, call.method

    def test_a_5xx_on_a_lookup_is_retried(self, door: DoorSetup) -> None:
        if door.lookup is None:
            pytest.skip(f"{self.spec_id} has no lookup: every call it makes is a write")
        call = door.lookup
        sleeps = SleepRecorder()
        door.server.fail_next(call.path, status=503, times=2)
        session = HttpSession(allow_private_networks=True, sleep=sleeps, max_attempts=3)

        result = door.connect(session).call(call.method, call.params)

        assert result.first().get(call.result_key)
        assert [r.status for r in door.server.requests_to(call.path)] == [503, 503, 200]
        assert len(sleeps.waits) == 2
        assert all(0 <= wait <= session.backoff_max for wait in sleeps.waits)

    def test_a_5xx_on_a_write_is_not_retried(self, door: DoorSetup) -> None:
        call = door.write
        sleeps = SleepRecorder()
        door.server.fail_next(call.path, status=500)
        session = HttpSession(allow_private_networks=True, sleep=sleeps, max_attempts=3)

        with pytest.raises(IntegrationError) as caught:
            door.connect(session).call(call.method, call.params)

        assert caught.value.status == 500
        assert caught.value.permanent is False  # the task may try again later
        assert "the server had an error" in caught.value.message
        assert [r.status for r in door.server.requests_to(call.path)] == [500]
        assert sleeps.waits == []

    @pytest.mark.parametrize("address", private_addresses)
    def test_the_ssrf_guard_refuses_a_private_address(self, door: DoorSetup, address: str) -> None:
        # 127.0.0.1 is the sandbox itself, so a request that got through would be recorded;
        # any other address would trip the loopback-only network guard of tests/conftest.py.
        base_url = door.server.url if address == "127.0.0.1" else f"http://{address}"
        for call in door.calls():
            client = door.connect(HttpSession(allow_private_networks=False), base_url)

            with pytest.raises(IntegrationError) as caught:
                client.call(call.method, call.params)

            message = caught.value.message
            assert caught.value.permanent is True, call.method
            assert f"Refused to connect to {address}: private network addresses" in message
        assert door.server.requests == []


def _step(spec: Spec, method: str, index: int | None) -> dict[str, Any]:
    if method.startswith("Install/") or method.startswith("Uninstall/"):
        kind, _, position = method.partition("/")
        return (spec.install if kind == "Install" else spec.uninstall)[int(position)]
    steps = spec.steps(method)
    return steps[index or 0]


def _comparable(summary: dict[str, Any]) -> dict[str, Any]:
    return {
        "method": summary["method"],
        "path": urllib.parse.urlsplit(summary["url"]).path,
        "query": summary["query"],
        "content_type": summary["content_type"],
        "body": summary["body"],
    }


class RecordedExchanges:
    """Replays `tests/fixtures/<spec id>/*.json` against the spec (no server needed)."""

    spec_id: ClassVar[str]
    replay_values: ClassVar[dict[str, Any]] = {}

    def exchanges(self) -> list[dict[str, Any]]:
        found = recorded_exchanges(self.spec_id)
        assert found, f"no recorded fixtures under tests/fixtures/{self.spec_id}/"
        return found

    def test_the_spec_still_sends_the_recorded_requests(self) -> None:
        spec = builtin_spec(self.spec_id)
        for exchange in self.exchanges():
            step = _step(spec, exchange["method"], exchange.get("step"))
            request = build_request(spec, step, {**self.replay_values, **exchange["values"]})

            rendered = _comparable(request_summary(request))
            assert rendered == exchange["request"], exchange["name"]

    def test_the_recorded_responses_map_to_the_recorded_values(self) -> None:
        spec = builtin_spec(self.spec_id)
        for exchange in self.exchanges():
            step = _step(spec, exchange["method"], exchange.get("step"))
            body = exchange["response"]["body"]
            mapped = map_response(
                spec,
                step,
                body=b"" if body is None else json.dumps(body).encode(),
                headers=exchange["response"].get("headers"),
                context=exchange["values"],
            )

            result = mapped.records if mapped.is_list else mapped.values
            assert result == exchange["mapped"], exchange["name"]
