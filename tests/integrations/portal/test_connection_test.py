"""The connection test: a harmless method (Users, or FindContact with a number the admin
types, normalized with the organization's region) shows the mapped result or the actionable
error and the request sent — never a secret property's value."""

from __future__ import annotations

import html
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from integrations.models import DeliveryLogEntry, Installation
from integrations.services import installation_test
from tests.integrations.portal.portal_support import (
    API_KEY_SECRET,
    approved_version,
    bearer_crm_document,
)
from tests.tenants.conftest import Tenant

pytestmark = pytest.mark.django_db

# The API key in a custom header and in the query string: both must be redacted.
HEADER_AND_QUERY_DOCUMENT = bearer_crm_document(
    "header-key-crm",
    authentication={"type": "none"},
    request_headers={"X-API-Key": "$API Key$"},
    API={
        "Users": {
            "request_method": "GET",
            "request_path": "/users",
            "request_parameters": {"key": "$API Key$"},
            "response_map": {
                "records": [{"id": "$user_id$", "name": "$user_name$", "email": "$user_email$"}]
            },
        },
        "FindContact": {
            "request_method": "GET",
            "request_path": "/contacts/search",
            "request_parameters": {"phone": "$phone$"},
            "response_map": {"records": [{"id": "$contact_id$", "name": "$contact_name$"}]},
        },
    },
)


@pytest.fixture(autouse=True)
def _loopback(settings: Any) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True


def _installation(tenant: Tenant, server: Any, document: dict[str, Any] | None = None):
    return Installation.objects.create(
        organization=tenant.org,
        spec_version=approved_version(document or bearer_crm_document()),
        properties={"Base URL": server.url},
        secret_properties={"API Key": API_KEY_SECRET},
    )


def _run(client: Client, installation: Installation, **data: str) -> str:
    response = client.post(reverse("integrations:installation_test", args=[installation.pk]), data)
    assert response.status_code == 200
    return response.content.decode()


def test_users_test_shows_records_and_the_request_without_the_secret(
    client: Client, tenant_a: Tenant, crm_server: Any
) -> None:
    installation = _installation(tenant_a, crm_server)
    client.force_login(tenant_a.org_admin)

    page = _run(client, installation, method_name="Users")

    assert 'data-ok="true"' in page
    assert "Alice Agent" in page and "alice@crm.example" in page
    assert f"{crm_server.url}/users" in page
    assert API_KEY_SECRET not in page
    assert DeliveryLogEntry.objects.filter(installation=installation, ok=True).count() == 1


def test_find_contact_normalizes_the_typed_number_with_the_org_region(
    client: Client, tenant_a: Tenant, crm_server: Any
) -> None:
    installation = _installation(tenant_a, crm_server)
    client.force_login(tenant_a.reseller)

    page = _run(client, installation, method_name="FindContact", phone="(415) 555-0100")

    assert "+14155550100" in page
    assert "Jane Doe" in page and "c-1" in page
    assert crm_server.last("/contacts/search").args()["phone"] == "+14155550100"


def test_find_contact_with_no_match_says_so(
    client: Client, tenant_a: Tenant, crm_server: Any
) -> None:
    installation = _installation(tenant_a, crm_server)
    client.force_login(tenant_a.reseller)

    page = _run(client, installation, method_name="FindContact", phone="415 555 0999")

    assert 'data-ok="true"' in page and "no contact has this number" in page


def test_unreadable_number_is_a_form_error(
    client: Client, tenant_a: Tenant, crm_server: Any
) -> None:
    installation = _installation(tenant_a, crm_server)
    client.force_login(tenant_a.reseller)

    page = _run(client, installation, method_name="FindContact", phone="hello")

    assert "is not a phone number" in page and 'data-testid="test-result"' not in page
    assert not crm_server.requests_to("/contacts/search")


def test_secret_in_headers_and_query_is_redacted_on_success_and_failure(
    client: Client, tenant_a: Tenant, crm_server: Any
) -> None:
    installation = _installation(tenant_a, crm_server, HEADER_AND_QUERY_DOCUMENT)
    client.force_login(tenant_a.reseller)

    worked = _run(client, installation, method_name="Users")
    crm_server.fail_next("/users", status=403, body={"error": {"message": "forbidden"}})
    failed = _run(client, installation, method_name="Users")

    assert 'data-ok="true"' in worked and 'data-ok="false"' in failed
    assert "403" in failed
    for page in (worked, failed):
        assert API_KEY_SECRET not in page
        assert "[redacted]" in page


def test_rejected_credentials_show_an_actionable_error(
    client: Client, tenant_a: Tenant, crm_server: Any
) -> None:
    installation = _installation(tenant_a, crm_server)
    installation.secret_properties = {"API Key": "wrong-but-secret-value"}
    installation.save()
    client.force_login(tenant_a.reseller)

    page = _run(client, installation, method_name="Users")

    assert 'data-testid="test-error"' in page and "401" in page
    assert "wrong-but-secret-value" not in page
    assert f"{crm_server.url}/users" in page
    # A bearer spec has no Connect button: the message says which setting to fix.
    shown = html.unescape(page)
    assert "credentials rejected — check the “API Key” in the integration's Settings" in shown
    assert "reconnect" not in shown.lower()


def test_service_returns_the_result_as_json(tenant_a: Tenant, crm_server: Any) -> None:
    installation = _installation(tenant_a, crm_server)

    outcome = installation_test(
        installation=installation, method_name="FindContact", phone="+1 415 555 0100"
    )

    assert outcome.ok and outcome.phone == "+14155550100"
    assert outcome.result == [{"contact_id": "c-1", "contact_name": "Jane Doe"}]
    assert outcome.requests[0]["method"] == "GET"
    assert outcome.requests[0]["query"] == [["phone", "+14155550100"]]
    assert outcome.attempts[0]["status"] == 200


def test_detail_page_offers_the_test_box(client: Client, tenant_a: Tenant, crm_server: Any) -> None:
    installation = _installation(tenant_a, crm_server)
    client.force_login(tenant_a.reseller)

    page = client.get(
        reverse("integrations:installation_detail", args=[installation.pk])
    ).content.decode()

    assert reverse("integrations:installation_test", args=[installation.pk]) in page
    assert '<option value="FindContact">' in page and 'name="phone"' in page
