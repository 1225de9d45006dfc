"""Enabling, editing, upgrading and disabling an integration: Install / Uninstall run and
their failures are shown; basic/bearer/token credentials are verified by a test call; a
failed enable stores nothing."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import Client
from django.urls import reverse

from integrations.engine.errors import IntegrationError
from integrations.models import DeliveryLogEntry, Installation
from integrations.sandbox.pytest_fixtures import ringrx_server  # noqa: F401
from integrations.sandbox.ringrx import DEFAULT_API_SECRET, DEFAULT_API_TOKEN
from integrations.services import (
    CREDENTIALS_NOT_VERIFIED,
    VERIFY_PHONE,
    installation_create,
    installation_delete,
    installation_update,
    installation_upgrade,
)
from tests.factories import FACTORY_SMS_DOCUMENT
from tests.integrations.portal.portal_support import (
    API_KEY_SECRET,
    approved_version,
    bearer_crm_document,
    builtin_version,
)
from tests.tenants.conftest import Tenant

pytestmark = pytest.mark.django_db

INSTALL_DOCUMENT = bearer_crm_document(
    "install-crm",
    parameters={"crm_account_id": "string"},
    Install=[
        {
            "request_method": "POST",
            "request_path": "/accounts",
            "request_parameters": {"name": "Patchbay $org_id$"},
            "response_map": {"id": "$crm_account_id$"},
        }
    ],
    Uninstall=[{"request_method": "DELETE", "request_path": "/contacts/c-1"}],
)


@pytest.fixture(autouse=True)
def _loopback(settings: Any) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True


def _create(tenant: Tenant, document: dict[str, Any], server: Any, key: str = API_KEY_SECRET):
    return installation_create(
        user=tenant.reseller,
        organization=tenant.org,
        spec_version=approved_version(document),
        properties={"Base URL": server.url},
        secret_properties={"API Key": key},
    )


def test_bearer_credentials_are_verified_with_a_users_call(
    tenant_a: Tenant, crm_server: Any
) -> None:
    installation = _create(tenant_a, bearer_crm_document(), crm_server)

    assert installation.status == Installation.Status.ACTIVE
    assert installation.connected_as == "Alice Agent <alice@crm.example>"
    assert len(crm_server.requests_to("/users", "GET")) == 1


def test_wrong_credentials_create_nothing(tenant_a: Tenant, crm_server: Any) -> None:
    with pytest.raises(IntegrationError) as caught:
        _create(tenant_a, bearer_crm_document(), crm_server, key="wrong-key")

    assert "401" in str(caught.value)
    assert "check the “API Key” in the integration's Settings" in str(caught.value)
    assert "reconnect" not in str(caught.value)
    assert not Installation.objects.exists()
    assert not DeliveryLogEntry.objects.exists()


FIND_CONTACT_ONLY_DOCUMENT = bearer_crm_document(
    "find-only-crm",
    API={"FindContact": bearer_crm_document()["API"]["FindContact"]},
)


def test_without_users_the_key_is_verified_with_a_find_contact_that_matches_nobody(
    tenant_a: Tenant, crm_server: Any
) -> None:
    with pytest.raises(IntegrationError) as caught:
        _create(tenant_a, FIND_CONTACT_ONLY_DOCUMENT, crm_server, key="wrong-key")

    assert "401" in str(caught.value) and "“API Key”" in str(caught.value)
    assert not Installation.objects.exists()
    searched = crm_server.requests_to("/contacts/search", "GET")
    assert len(searched) == 1 and searched[0].args()["phone"] == VERIFY_PHONE

    installation = _create(tenant_a, FIND_CONTACT_ONLY_DOCUMENT, crm_server)

    assert installation.status == Installation.Status.ACTIVE
    assert installation.status_detail == "" and installation.connected_as == ""
    assert len(crm_server.requests_to("/contacts/search", "GET")) == 2


BEARER_SMS_DOCUMENT = {
    **FACTORY_SMS_DOCUMENT,
    "id": "bearer-sms",
    "name": "Bearer SMS",
    "properties": [
        {"name": "Base URL", "type": "url", "required": True},
        {"name": "API Key", "type": "secret", "required": True},
    ],
    "authentication": {"type": "bearer", "token": "$API Key$"},
}


def test_a_spec_with_no_read_method_says_the_credentials_were_not_verified(
    client: Client, tenant_a: Tenant, crm_server: Any
) -> None:
    version = approved_version(BEARER_SMS_DOCUMENT)
    client.force_login(tenant_a.reseller)

    response = client.post(
        reverse("integrations:installation_create", args=[tenant_a.org.pk, version.spec_id]),
        {"prop_0": crm_server.url, "prop_1": "any-key-at-all"},
        follow=True,
    )

    installation = Installation.objects.get(organization=tenant_a.org)
    assert installation.status_detail == CREDENTIALS_NOT_VERIFIED
    page = response.content.decode()
    assert "credentials not verified: this integration has no read method to test with" in (
        page.lower()
    )
    assert "the test call worked" not in page
    assert crm_server.requests_to("*") == []


def test_install_runs_on_enable_and_its_captures_are_stored(
    tenant_a: Tenant, crm_server: Any
) -> None:
    installation = _create(tenant_a, INSTALL_DOCUMENT, crm_server)

    created = crm_server.requests_to("/accounts", "POST")
    assert len(created) == 1 and created[0].json == {"name": f"Patchbay {tenant_a.org.pk}"}
    assert installation.captured["crm_account_id"].startswith("a-")


def test_install_failure_leaves_no_installation(tenant_a: Tenant, crm_server: Any) -> None:
    crm_server.fail_next("/accounts", status=403, body={"error": {"message": "no permission"}})

    with pytest.raises(IntegrationError):
        _create(tenant_a, INSTALL_DOCUMENT, crm_server)

    assert not Installation.objects.exists()


def test_install_failure_is_shown_on_the_enable_page(
    client: Client, tenant_a: Tenant, crm_server: Any
) -> None:
    version = approved_version(INSTALL_DOCUMENT)
    crm_server.fail_next("/accounts", status=403, body={"error": {"message": "no permission"}})
    client.force_login(tenant_a.reseller)

    response = client.post(
        reverse("integrations:installation_create", args=[tenant_a.org.pk, version.spec_id]),
        {"prop_0": crm_server.url, "prop_1": API_KEY_SECRET, "match_policy": "recent"},
    )

    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-testid="service-error"' in page and "403" in page
    assert API_KEY_SECRET not in page
    assert not Installation.objects.exists()


def test_enable_through_the_page_redirects_to_the_installation(
    client: Client, tenant_a: Tenant, crm_server: Any
) -> None:
    version = approved_version(bearer_crm_document())
    client.force_login(tenant_a.reseller)

    response = client.post(
        reverse("integrations:installation_create", args=[tenant_a.org.pk, version.spec_id]),
        {
            "prop_0": crm_server.url,
            "prop_1": API_KEY_SECRET,
            "label": "Sales CRM",
            "create_contacts": "on",
            "match_policy": "owner",
        },
        follow=True,
    )

    installation = Installation.objects.get()
    assert response.redirect_chain[-1][0] == reverse(
        "integrations:installation_detail", args=[installation.pk]
    )
    assert (installation.label, installation.create_contacts, installation.match_policy) == (
        "Sales CRM",
        True,
        "owner",
    )
    page = response.content.decode()
    assert "Active" in page and "Connected as Alice Agent" in page
    assert API_KEY_SECRET not in page


def test_missing_required_properties_are_named(tenant_a: Tenant) -> None:
    with pytest.raises(ValidationError) as caught:
        installation_create(
            user=tenant_a.reseller,
            organization=tenant_a.org,
            spec_version=approved_version(bearer_crm_document()),
            properties={"Unknown": "x"},
            secret_properties={},
        )

    assert set(caught.value.message_dict) == {"Base URL", "API Key", "Unknown"}
    assert not Installation.objects.exists()


def test_another_accounts_spec_cannot_be_enabled(tenant_a: Tenant, tenant_b: Tenant) -> None:
    version = approved_version(bearer_crm_document("bravo-crm"), account=tenant_b.account)

    with pytest.raises(PermissionDenied):
        installation_create(
            user=tenant_a.reseller,
            organization=tenant_a.org,
            spec_version=version,
            properties={"Base URL": "https://crm.example.com"},
            secret_properties={"API Key": "k"},
        )


def test_update_verifies_again_and_a_failure_changes_nothing(
    tenant_a: Tenant, crm_server: Any
) -> None:
    installation = _create(tenant_a, bearer_crm_document(), crm_server)

    with pytest.raises(IntegrationError):
        installation_update(
            installation=installation,
            properties={"Base URL": crm_server.url},
            secret_properties={"API Key": "a-wrong-key"},
        )

    installation.refresh_from_db()
    assert installation.secret_properties == {"API Key": API_KEY_SECRET}


def test_disable_runs_uninstall(client: Client, tenant_a: Tenant, crm_server: Any) -> None:
    installation = _create(tenant_a, INSTALL_DOCUMENT, crm_server)
    client.force_login(tenant_a.reseller)

    response = client.post(reverse("integrations:installation_delete", args=[installation.pk]))

    assert response.status_code == 302
    assert response["Location"] == reverse(
        "integrations:organization_integrations", args=[tenant_a.org.pk]
    )
    assert len(crm_server.requests_to("/contacts/c-1", "DELETE")) == 1
    assert not Installation.objects.exists()


def test_uninstall_failure_is_shown_and_disable_anyway_works(
    client: Client, tenant_a: Tenant, crm_server: Any
) -> None:
    installation = _create(tenant_a, INSTALL_DOCUMENT, crm_server)
    crm_server.fail_next("/contacts/c-1", status=403, body={"error": {"message": "locked"}})
    client.force_login(tenant_a.reseller)
    url = reverse("integrations:installation_delete", args=[installation.pk])

    failed = client.post(url)

    assert failed.status_code == 200
    page = failed.content.decode()
    assert 'data-testid="uninstall-error"' in page and "403" in page
    assert 'data-testid="disable-anyway"' in page
    assert Installation.objects.filter(pk=installation.pk).exists()

    crm_server.fail_next("/contacts/c-1", status=403)
    forced = client.post(url, {"force": "1"})

    assert forced.status_code == 302
    assert not Installation.objects.exists()


def test_service_delete_raises_unless_forced(tenant_a: Tenant, crm_server: Any) -> None:
    installation = _create(tenant_a, INSTALL_DOCUMENT, crm_server)
    crm_server.fail_next("/contacts/c-1", status=403)

    with pytest.raises(IntegrationError):
        installation_delete(installation=installation)
    assert Installation.objects.filter(pk=installation.pk).exists()


def test_new_version_keeps_installations_on_theirs_until_upgraded(
    client: Client, tenant_a: Tenant, crm_server: Any
) -> None:
    installation = _create(tenant_a, bearer_crm_document(), crm_server)
    old_version = installation.spec_version
    v2_document = bearer_crm_document(
        properties=[
            {"name": "Base URL", "type": "url", "required": True},
            {"name": "API Key", "type": "secret", "required": True},
            {"name": "Team", "type": "string", "required": True},
        ]
    )
    v2 = approved_version(v2_document)
    client.force_login(tenant_a.reseller)

    page = client.get(reverse("integrations:installation_detail", args=[installation.pk]))
    installation.refresh_from_db()
    assert installation.spec_version == old_version
    assert "v2 available" in page.content.decode() and "Upgrade" in page.content.decode()

    with pytest.raises(ValidationError) as caught:
        installation_upgrade(installation=installation, spec_version=v2)
    assert "Team" in caught.value.message_dict

    upgrade_url = reverse("integrations:installation_upgrade", args=[installation.pk])
    form_page = client.get(upgrade_url).content.decode()
    assert "Team" in form_page and API_KEY_SECRET not in form_page
    response = client.post(upgrade_url, {"prop_0": crm_server.url, "prop_1": "", "prop_2": "A"})

    assert response.status_code == 302, response.content.decode()[:3000]
    installation.refresh_from_db()
    assert installation.spec_version == v2
    assert installation.properties == {"Base URL": crm_server.url, "Team": "A"}
    assert installation.secret_properties == {"API Key": API_KEY_SECRET}


def test_organization_integrations_tab_lists_installations(
    client: Client, tenant_a: Tenant, crm_server: Any
) -> None:
    installation = _create(tenant_a, bearer_crm_document(), crm_server)
    client.force_login(tenant_a.org_admin)

    detail = client.get(reverse("organization_detail", args=[tenant_a.org.pk])).content.decode()
    tab = client.get(
        reverse("integrations:organization_integrations", args=[tenant_a.org.pk])
    ).content.decode()

    assert reverse("integrations:organization_integrations", args=[tenant_a.org.pk]) in detail
    assert reverse("integrations:installation_detail", args=[installation.pk]) in tab
    assert "Enable an integration" in tab


def test_token_exchange_credentials_are_verified_by_obtaining_a_token(
    tenant_a: Tenant,
    ringrx_server: Any,  # noqa: F811
) -> None:
    version = builtin_version("ringrx-sms")

    def create(secret: str) -> Installation:
        return installation_create(
            user=tenant_a.reseller,
            organization=tenant_a.org,
            spec_version=version,
            properties={"API URL": ringrx_server.url, "API Token": DEFAULT_API_TOKEN},
            secret_properties={"API Secret": secret, "Callback Token": "cb-token"},
        )

    with pytest.raises(IntegrationError):
        create("wrong-secret")
    assert not Installation.objects.exists()

    installation = create(DEFAULT_API_SECRET)

    assert installation.status == Installation.Status.ACTIVE
    assert installation.tokens["access_token"]
    assert len(ringrx_server.requests_to("/auth/token", "POST")) == 2
