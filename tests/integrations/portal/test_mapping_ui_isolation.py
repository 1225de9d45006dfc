"""Tenant isolation of the user-mapping, SMS-number and delivery-log pages: every route of
the "mapping" section of `integrations.urls`, GET and POST, by people who must not reach the
installation — another reseller, an org admin of a sibling org, an outsider, anonymous."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from integrations.models import DeliveryLogEntry, Installation, UserFetch, UserMapping
from tenants.models import SmsNumber
from tests.factories import DeliveryLogEntryFactory, UserFactory, UserMappingFactory
from tests.integrations.portal.mapping_support import Tenant, crm_installation, sms_installation

pytestmark = pytest.mark.django_db

# (url name, installation kind, needs an entry id)
UI_ROUTES = [
    ("user_mapping", "crm", False),
    ("user_mapping_fetch", "crm", False),
    ("user_mapping_fetch_status", "crm", False),
    ("sms_numbers", "sms", False),
    ("delivery_log", "crm", False),
    ("delivery_log_detail", "crm", True),
]


def _objects(organization: Any) -> dict[str, Any]:
    crm = crm_installation(organization)
    mapping = UserMappingFactory(installation=crm)
    return {
        "crm": crm,
        "sms": sms_installation(organization),
        "entry": DeliveryLogEntryFactory(installation=crm),
        "pbx_user": mapping.pbx_user,
        "sms_number": SmsNumber.objects.filter(organization=organization).first(),
        "crm_user": mapping.crm_user,
    }


def _url(name: str, kind: str, with_entry: bool, objects: dict[str, Any]) -> str:
    args = [objects[kind].pk] + ([objects["entry"].pk] if with_entry else [])
    return reverse(f"integrations:{name}", args=args)


def _hostile_post(objects: dict[str, Any]) -> dict[str, Any]:
    """A body every page would act on if the tenant check were missing."""
    return {
        f"crm_user_{objects['pbx_user'].pk}": "",
        "numbers": [objects["sms_number"].pk],
        "bound": [objects["sms_number"].pk],
    }


def _snapshot() -> tuple:
    return (
        sorted(UserMapping.objects.values_list("pk", "crm_user_id", "manual")),
        sorted(SmsNumber.objects.values_list("pk", "installation_id")),
        UserFetch.objects.count(),
        DeliveryLogEntry.objects.count(),
        Installation.objects.count(),
    )


def test_the_table_covers_every_mapping_route() -> None:
    from integrations import urls

    names = {p.name for p in urls.urlpatterns}
    assert {name for name, _, _ in UI_ROUTES} <= names


@pytest.mark.parametrize("route", UI_ROUTES, ids=lambda r: r[0])
def test_the_owner_reaches_every_page(
    client: Client, tenant_a: Tenant, route: tuple[str, str, bool]
) -> None:
    objects = _objects(tenant_a.org)
    client.force_login(tenant_a.org_admin)

    response = client.get(_url(*route, objects))

    expected = 405 if route[0] == "user_mapping_fetch" else 200
    assert response.status_code == expected


@pytest.mark.parametrize("route", UI_ROUTES, ids=lambda r: r[0])
@pytest.mark.parametrize("who", ["other_reseller", "sibling_org_admin", "outsider"])
def test_people_outside_the_organization_get_404_on_every_page(
    client: Client, tenant_a: Tenant, tenant_b: Tenant, route: tuple[str, str, bool], who: str
) -> None:
    if who == "sibling_org_admin":
        objects = _objects(tenant_a.sibling_org)
        client.force_login(tenant_a.org_admin)
    else:
        objects = _objects(tenant_a.org)
        client.force_login(
            tenant_b.reseller if who == "other_reseller" else UserFactory(username="outsider")
        )
    url = _url(*route, objects)
    before = _snapshot()

    assert client.get(url).status_code == 404
    assert client.post(url, _hostile_post(objects)).status_code == 404
    assert _snapshot() == before


def test_a_log_entry_is_404_under_another_installation_of_ones_own(
    client: Client, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    foreign = _objects(tenant_a.org)["entry"]
    own = crm_installation(tenant_b.org)
    client.force_login(tenant_b.reseller)

    response = client.get(reverse("integrations:delivery_log_detail", args=[own.pk, foreign.pk]))

    assert response.status_code == 404


@pytest.mark.parametrize("route", UI_ROUTES, ids=lambda r: r[0])
def test_anonymous_is_sent_to_login(
    client: Client, tenant_a: Tenant, route: tuple[str, str, bool]
) -> None:
    objects = _objects(tenant_a.org)
    url = _url(*route, objects)
    before = _snapshot()

    for method in (client.get, client.post):
        response = method(url)
        assert response.status_code == 302
        assert response["Location"].startswith(f"{reverse('login')}?next=")
    assert _snapshot() == before
