"""A token an Install request captures into a `secret` parameter: stored encrypted on the
installation, sent with every later request, and never in the delivery log (list, detail,
errors) nor on the installation page."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from integrations.connections import installation_connection
from integrations.engine.errors import IntegrationError
from integrations.models import DeliveryLogEntry, Installation
from integrations.services import installation_create, installation_test
from tests.integrations.engine.conftest import LocalServer, Received, Reply
from tests.integrations.portal.portal_support import (
    API_KEY_SECRET,
    approved_version,
    bearer_crm_document,
    raw_installation_column,
)
from tests.tenants.conftest import Tenant

pytestmark = pytest.mark.django_db

# Neither the key nor a well-known secret field name: only the `secret` type hides it.
SESSION_KEY = "sess-Vq81/zz+Kp"

DOCUMENT = bearer_crm_document(
    "secret-install-crm",
    parameters={"session_key": "secret", "crm_account_id": "string"},
    Install=[
        {
            "request_method": "POST",
            "request_path": "/install",
            "request_parameters": {"name": "Patchbay $org_id$"},
            "response_map": {"id": "$crm_account_id$", "grant": {"handle": "$session_key$"}},
        }
    ],
    API={
        "Users": {
            "request_method": "GET",
            "request_path": "/users",
            "request_headers": {"X-Session": "$session_key$"},
            "request_parameters": {"session": "$session_key$"},
            "response_map": {"records": [{"id": "$user_id$", "name": "$user_name$"}]},
        },
        "FindContact": {
            "request_method": "GET",
            "request_path": "/contacts/search",
            "request_headers": {"X-Session": "$session_key$"},
            "request_parameters": {"phone": "$phone$", "session": "$session_key$"},
            "response_map": {"records": [{"id": "$contact_id$", "name": "$contact_name$"}]},
        },
    },
)


@pytest.fixture(autouse=True)
def _loopback(settings: Any) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True


@pytest.fixture
def crm() -> Iterator[LocalServer]:
    server = LocalServer()

    def needs_session(body: dict[str, Any]) -> Any:
        def handler(request: Received) -> Reply:
            if request.query.get("session") != [SESSION_KEY]:
                return Reply(401, {"error": "no session"})
            if request.headers.get("X-Session") != SESSION_KEY:
                return Reply(401, {"error": "no session header"})
            return Reply(200, body)

        return handler

    server.route("POST", "/install", Reply(201, {"id": "acc-7", "grant": {"handle": SESSION_KEY}}))
    server.route("GET", "/users", needs_session({"records": [{"id": "u1", "name": "Ann"}]}))
    server.route("GET", "/contacts/search", needs_session({"records": []}))
    yield server
    server.close()


@pytest.fixture
def installation(tenant_a: Tenant, crm: LocalServer) -> Installation:
    return installation_create(
        user=tenant_a.reseller,
        organization=tenant_a.org,
        spec_version=approved_version(DOCUMENT),
        properties={"Base URL": crm.url()},
        secret_properties={"API Key": API_KEY_SECRET},
    )


def _stored_log(installation: Installation) -> str:
    return "\n".join(
        f"{e.url} {e.request_body} {e.response_body} {e.error} {e.produced_ids}"
        for e in DeliveryLogEntry.objects.filter(installation=installation)
    )


def test_the_captured_token_is_sent_and_encrypted_at_rest(
    installation: Installation, crm: LocalServer
) -> None:
    assert installation.status == Installation.Status.ACTIVE
    assert installation.captured == {"crm_account_id": "acc-7", "session_key": SESSION_KEY}
    raw = raw_installation_column(installation.pk, "captured")
    assert raw and SESSION_KEY not in raw and "Vq81" not in raw
    # The verification call carried it in the query string and a header.
    (users,) = crm.requests_to("/users")
    assert users.query["session"] == [SESSION_KEY]
    assert users.headers["X-Session"] == SESSION_KEY


def test_the_delivery_log_never_holds_the_token(
    client: Client, tenant_a: Tenant, installation: Installation, crm: LocalServer
) -> None:
    connection = installation_connection(Installation.objects.get(pk=installation.pk))
    connection.client.call("FindContact", {"phone": "+15551234567"})
    crm.route(
        "GET",
        "/contacts/search",
        lambda request: Reply(400, {"detail": f"session {request.query['session'][0]} refused"}),
    )
    with pytest.raises(IntegrationError) as caught:
        installation_connection(installation).client.call("FindContact", {"phone": "+15551234567"})

    entries = list(DeliveryLogEntry.objects.filter(installation=installation).order_by("pk"))
    assert [e.method_name for e in entries] == ["Install", "Users", "FindContact", "FindContact"]
    stored = _stored_log(installation)
    assert "Vq81" not in stored and "Vq81" not in str(caught.value)
    assert '"handle": "[redacted]"' in entries[0].response_body
    assert "acc-7" in entries[0].response_body
    assert "session=[redacted]" in entries[2].url
    assert entries[3].status_code == 400 and "[redacted]" in entries[3].response_body

    client.force_login(tenant_a.org_admin)
    pages = [
        client.get(reverse("integrations:installation_detail", args=[installation.pk])),
        client.get(reverse("integrations:delivery_log", args=[installation.pk])),
        *(
            client.get(
                reverse("integrations:delivery_log_detail", args=[installation.pk, entry.pk])
            )
            for entry in entries
        ),
    ]
    assert [page.status_code for page in pages] == [200] * len(pages)
    for page in pages:
        text = page.content.decode()
        assert "Vq81" not in text and "Vq81%2F" not in text
    assert "session_key" in pages[0].content.decode()  # the name is listed, not the value


def test_the_connection_test_never_shows_the_token(
    installation: Installation, crm: LocalServer
) -> None:
    # A CRM that echoes what it was sent into a field the test shows (the user's name).
    crm.route(
        "GET",
        "/users",
        lambda request: Reply(
            200, {"records": [{"id": "u1", "name": f"Ann ({request.query['session'][0]})"}]}
        ),
    )

    outcome = installation_test(installation=Installation.objects.get(pk=installation.pk))

    assert outcome.ok, outcome.error
    shown = json.dumps([outcome.records, outcome.result, outcome.requests, outcome.attempts])
    assert "Ann ([redacted])" in shown
    assert "Vq81" not in shown
