"""The contract every built-in spec keeps, as test classes each spec's test module subclasses.

`CrmContract` is what the portal relies on from any `crm` spec, checked against the spec's
sandbox: `Users` gives records with `user_id`; `FindContact` on a known number gives at least
one record with `contact_id` and `contact_name`, and on an unknown number an empty list (no
error); `CreateActivity`, when the spec has it, gives an `activity_id`; list methods print as
lists. `RecordedExchanges` replays the spec's recorded fixtures (`tests/fixtures/<spec id>/`):
the spec still renders the recorded request and maps the recorded response to the recorded
values, so a change to a spec that alters either shows up as a failing test.

A subclass sets `spec_id` (and `replay_values`, the property values used to render recorded
requests) and, for `CrmContract`, provides a `crm` fixture returning a connected `CrmSetup`.
Like django-anymail's shared suites, these classes hold tests but are not collected on their
own (their names do not start with `Test`).
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest

from integrations.engine.client import LIST_METHODS, SpecClient, request_summary
from integrations.engine.mapping import map_response
from integrations.engine.request import build_request
from integrations.engine.spec import Spec
from integrations.sandbox.base import SandboxServer
from tests.integrations.specs.conftest import builtin_spec, recorded_exchanges


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
