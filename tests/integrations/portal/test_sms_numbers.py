"""SMS numbers of an SMS installation: binding (same organization, SMS integrations only),
assignment to PBX users, and the provider webhook URL to copy."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from integrations.sms_numbers import sms_number_bind, sms_webhook_url
from tenants.models import SmsNumber
from tests.factories import PbxUserFactory, SmsNumberFactory
from tests.integrations.portal.mapping_support import Tenant, crm_installation, sms_installation

pytestmark = pytest.mark.django_db


def _page_url(installation: Any) -> str:
    return reverse("integrations:sms_numbers", args=[installation.pk])


def test_a_number_is_bound_to_an_sms_installation_and_assigned(tenant_a: Tenant) -> None:
    installation = sms_installation(tenant_a.org)
    second_user = PbxUserFactory(organization=tenant_a.org)

    sms_number_bind(
        installation=installation,
        sms_number=tenant_a.sms_number,
        users=[tenant_a.pbx_user, second_user],
    )

    number = SmsNumber.objects.get(pk=tenant_a.sms_number.pk)
    assert number.installation == installation
    assert set(number.users.all()) == {tenant_a.pbx_user, second_user}


def test_a_crm_installation_cannot_take_a_number(tenant_a: Tenant) -> None:
    with pytest.raises(ValidationError) as error:
        sms_number_bind(installation=crm_installation(tenant_a.org), sms_number=tenant_a.sms_number)

    assert "installation" in error.value.message_dict
    assert SmsNumber.objects.get(pk=tenant_a.sms_number.pk).installation is None


def test_an_sms_installation_of_another_organization_cannot_take_a_number(
    tenant_a: Tenant, tenant_b: Tenant
) -> None:
    for organization in (tenant_a.sibling_org, tenant_b.org):
        with pytest.raises(ValidationError) as error:
            sms_number_bind(
                installation=sms_installation(organization), sms_number=tenant_a.sms_number
            )
        assert "another organization" in " ".join(error.value.message_dict["installation"])
    assert SmsNumber.objects.get(pk=tenant_a.sms_number.pk).installation is None


def test_users_of_another_organization_cannot_be_assigned(tenant_a: Tenant) -> None:
    sibling_user = PbxUserFactory(organization=tenant_a.sibling_org)

    with pytest.raises(ValidationError):
        sms_number_bind(
            installation=sms_installation(tenant_a.org),
            sms_number=tenant_a.sms_number,
            users=[sibling_user],
        )

    number = SmsNumber.objects.get(pk=tenant_a.sms_number.pk)
    assert number.installation is None and list(number.users.all()) == []


def test_the_webhook_url_is_the_public_services_path(tenant_a: Tenant, settings: Any) -> None:
    settings.PUBLIC_BASE_URL = "https://portal.example.com"
    installation = sms_installation(tenant_a.org)

    url = sms_webhook_url(installation=installation)

    spec_id = installation.spec_version.spec.spec_id
    assert url == f"https://portal.example.com/services/{spec_id}/a{tenant_a.account.pk}"


# --- The page ---------------------------------------------------------------------------------


def test_the_page_shows_the_webhook_url_with_a_copy_button(
    client: Client, tenant_a: Tenant, settings: Any
) -> None:
    settings.PUBLIC_BASE_URL = "https://portal.example.com"
    installation = sms_installation(tenant_a.org)
    client.force_login(tenant_a.org_admin)

    response = client.get(_page_url(installation))

    html = response.content.decode()
    assert response.status_code == 200
    assert sms_webhook_url(installation=installation) in html
    assert 'data-copy-target="sms-webhook-url"' in html and "js/sms_numbers.js" in html
    assert tenant_a.sms_number.number in html
    # Only this organization's numbers are offered.
    sibling_number = SmsNumber.objects.get(organization=tenant_a.sibling_org)
    assert sibling_number.number not in html


def test_posting_the_page_binds_assigns_and_unbinds(client: Client, tenant_a: Tenant) -> None:
    installation = sms_installation(tenant_a.org)
    other_number = SmsNumberFactory(organization=tenant_a.org)
    sms_number_bind(installation=installation, sms_number=other_number)
    client.force_login(tenant_a.reseller)

    response = client.post(
        _page_url(installation),
        {
            "numbers": [tenant_a.sms_number.pk, other_number.pk],
            "bound": [tenant_a.sms_number.pk],
            f"users_{tenant_a.sms_number.pk}": [tenant_a.pbx_user.pk],
        },
        follow=True,
    )

    assert "Saved 2 SMS number(s)." in response.content.decode()
    bound = SmsNumber.objects.get(pk=tenant_a.sms_number.pk)
    assert bound.installation == installation and list(bound.users.all()) == [tenant_a.pbx_user]
    assert SmsNumber.objects.get(pk=other_number.pk).installation is None


def test_a_number_bound_elsewhere_is_left_alone_unless_checked(
    client: Client, tenant_a: Tenant
) -> None:
    here = sms_installation(tenant_a.org)
    elsewhere = sms_installation(tenant_a.org)
    sms_number_bind(installation=elsewhere, sms_number=tenant_a.sms_number)
    client.force_login(tenant_a.reseller)

    page = client.get(_page_url(here)).content.decode()
    client.post(_page_url(here), {"numbers": [tenant_a.sms_number.pk]})

    assert "checking moves it here" in page
    assert SmsNumber.objects.get(pk=tenant_a.sms_number.pk).installation == elsewhere


def test_a_crm_installations_numbers_page_refuses_to_bind(client: Client, tenant_a: Tenant) -> None:
    installation = crm_installation(tenant_a.org)
    client.force_login(tenant_a.reseller)

    page = client.get(_page_url(installation))
    response = client.post(
        _page_url(installation),
        {"numbers": [tenant_a.sms_number.pk], "bound": [tenant_a.sms_number.pk]},
        follow=True,
    )

    assert b"not an SMS integration" in page.content
    html = response.content.decode()
    assert "Only an SMS integration" in html and "Nothing was saved." in html
    assert SmsNumber.objects.get(pk=tenant_a.sms_number.pk).installation is None


def test_a_foreign_user_id_posted_to_the_page_saves_nothing(
    client: Client, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    installation = sms_installation(tenant_a.org)
    client.force_login(tenant_a.reseller)

    client.post(
        _page_url(installation),
        {
            "numbers": [tenant_a.sms_number.pk],
            "bound": [tenant_a.sms_number.pk],
            f"users_{tenant_a.sms_number.pk}": [tenant_b.pbx_user.pk],
        },
    )

    number = SmsNumber.objects.get(pk=tenant_a.sms_number.pk)
    assert number.installation is None and list(number.users.all()) == []
