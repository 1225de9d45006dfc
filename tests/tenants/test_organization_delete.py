"""Deleting an organization uninstalls its CRM integrations first, against the Zoho sandbox:
Zoho is unintegrated (the spec's Uninstall), and no installation (nor its tokens) is left."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from integrations.models import Installation
from integrations.sandbox.pytest_fixtures import zoho_server
from integrations.sandbox.zoho import DEFAULT_CLIENT_ID as ZOHO_CLIENT_ID
from integrations.sandbox.zoho import DEFAULT_CLIENT_SECRET as ZOHO_CLIENT_SECRET
from integrations.services import installation_create
from tenants.models import Organization
from tests.integrations.portal.portal_support import builtin_version, connect_through_views
from tests.tenants.conftest import Tenant

__all__ = ["zoho_server"]

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _loopback(settings: Any) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    settings.PUBLIC_BASE_URL = "http://testserver"


@pytest.fixture
def connected_zoho(tenant_a: Tenant, zoho_server: Any) -> Installation:
    """A Zoho PhoneBridge installation of tenant A's org, connected through the portal."""
    zoho_server.configure(auto_approve=True)
    installation = installation_create(
        user=tenant_a.reseller,
        organization=tenant_a.org,
        spec_version=builtin_version("zoho-phonebridge"),
        label="Zoho of Alpha",
        properties={
            "Accounts URL": zoho_server.url,
            "API Domain": zoho_server.url,
            "Client ID": ZOHO_CLIENT_ID,
        },
        secret_properties={
            "Client Secret": ZOHO_CLIENT_SECRET,
            "Callback Token": "zoho-callback-token",
        },
    )
    client = Client()
    client.force_login(tenant_a.reseller)
    connect_through_views(client, installation.pk)
    installation.refresh_from_db()
    assert installation.tokens["access_token"]
    assert zoho_server.integrated is True
    return installation


def test_the_confirm_page_lists_the_integrations_that_will_be_uninstalled(
    client: Client, tenant_a: Tenant, connected_zoho: Installation
) -> None:
    client.force_login(tenant_a.reseller)

    page = client.get(reverse("organization_delete", args=[tenant_a.org.pk])).content.decode()

    assert "1 integration(s) are uninstalled first: Zoho of Alpha." in page


def test_deleting_an_org_in_the_ui_uninstalls_zoho_and_drops_its_tokens(
    client: Client, tenant_a: Tenant, zoho_server: Any, connected_zoho: Installation
) -> None:
    access_token = connected_zoho.tokens["access_token"]
    client.force_login(tenant_a.reseller)

    response = client.post(reverse("organization_delete", args=[tenant_a.org.pk]))

    assert response.status_code == 302
    assert not Organization.objects.filter(pk=tenant_a.org.pk).exists()
    # The stored tokens went with the installation.
    assert not Installation.objects.filter(pk=connected_zoho.pk).exists()
    # Zoho was told, with the org's own token: PhoneBridge unintegrated (its Uninstall).
    assert zoho_server.integrated is False
    uninstall = zoho_server.requests_to("/crm/v2/phonebridge/integrate", "DELETE")
    assert len(uninstall) == 1
    assert access_token in (uninstall[0].header("Authorization") or "")


def test_deleting_an_org_through_the_api_uninstalls_too(
    tenant_a: Tenant, zoho_server: Any, connected_zoho: Installation
) -> None:
    api = APIClient()
    api.force_login(tenant_a.reseller)

    response = api.delete(f"/api/v1/organizations/{tenant_a.org.pk}/")

    assert response.status_code == 204
    assert zoho_server.integrated is False
    assert not Installation.objects.filter(pk=connected_zoho.pk).exists()


def test_a_provider_that_fails_to_uninstall_does_not_block_the_deletion(
    client: Client, tenant_a: Tenant, zoho_server: Any, connected_zoho: Installation
) -> None:
    zoho_server.fail_next("/crm/v2/phonebridge", status=500, times=None)
    client.force_login(tenant_a.reseller)

    response = client.post(reverse("organization_delete", args=[tenant_a.org.pk]))

    assert response.status_code == 302
    assert not Organization.objects.filter(pk=tenant_a.org.pk).exists()
    assert not Installation.objects.filter(pk=connected_zoho.pk).exists()
