"""Tenant isolation of the web UI: every route of `tenants.urls` that takes an id is tried,
GET and POST, by people who must not reach the row — never a sample of routes.

The route table is read from the urlconf, so a new route is covered (or, if it takes an id
this file does not know, fails loudly) without editing this file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.test import Client
from django.urls import URLPattern, reverse

from tenants import urls as tenant_urls
from tenants.models import Organization, PbxUser, SmsNumber
from tests.tenants.conftest import Tenant

pytestmark = pytest.mark.django_db

# A body that would be valid for every form of the UI, so a 404 is never a form error
# in disguise: if the tenant check were missing, these posts would change data.
HOSTILE_POST = {
    "name": "Hijacked",
    "pbx_domain": "evil.example.com",
    "default_region": "US",
    "extension": "999",
    "email": "evil@example.com",
    "number": "(415) 555-0999",
    "label": "Hijacked",
    "csv_text": "extension,name\n998,Hijacked\n",
    "import_valid_rows": "True",
}

ID_KWARGS = {"org_id", "user_id", "number_id"}


@dataclass(frozen=True)
class Route:
    name: str
    kwargs: frozenset[str]


def _routes() -> list[Route]:
    routes = []
    for pattern in tenant_urls.urlpatterns:
        assert isinstance(pattern, URLPattern), "flat urlconf expected"
        kwargs = frozenset(pattern.pattern.converters)
        unknown = kwargs - ID_KWARGS
        assert not unknown, f"route {pattern.name} takes {unknown}: teach this test about it"
        routes.append(Route(pattern.name, kwargs))
    return routes


ROUTES = _routes()
ID_ROUTES = [r for r in ROUTES if r.kwargs]
CHILD_ROUTES = [r for r in ROUTES if r.kwargs & {"user_id", "number_id"}]


def _url(route: Route, *, org: Organization, pbx_user: PbxUser, sms_number: SmsNumber) -> str:
    values = {"org_id": org.pk, "user_id": pbx_user.pk, "number_id": sms_number.pk}
    return reverse(route.name, kwargs={k: values[k] for k in route.kwargs})


def _snapshot() -> tuple:
    """Everything a hostile request could change."""
    return (
        sorted(Organization.objects.values_list("pk", "name", "pbx_domain", "webhook_secret")),
        sorted(PbxUser.objects.values_list("pk", "organization_id", "extension", "name")),
        sorted(SmsNumber.objects.values_list("pk", "organization_id", "number", "label")),
        sorted(SmsNumber.users.through.objects.values_list("smsnumber_id", "pbxuser_id")),
    )


def _requests(client: Client, url: str, users_field: list[int]) -> Iterator[tuple[str, int]]:
    yield "GET", client.get(url).status_code
    yield "POST", client.post(url, {**HOSTILE_POST, "users": users_field}).status_code


def test_the_route_table_covers_every_kind_of_object() -> None:
    names = {r.name for r in ID_ROUTES}
    assert {"organization_detail", "organization_edit", "organization_delete"} <= names
    assert {"organization_rotate_webhook_secret", "pbx_users_import"} <= names
    assert {"pbx_user_edit", "pbx_user_delete"} <= names
    assert {"sms_number_edit", "sms_number_assign", "sms_number_delete"} <= names
    assert len(ID_ROUTES) >= 13


@pytest.mark.parametrize("route", ID_ROUTES, ids=lambda r: r.name)
def test_reseller_of_another_account_gets_404_on_every_route(
    client: Client, tenant_a: Tenant, tenant_b: Tenant, route: Route
) -> None:
    client.force_login(tenant_b.reseller)
    url = _url(route, org=tenant_a.org, pbx_user=tenant_a.pbx_user, sms_number=tenant_a.sms_number)
    before = _snapshot()

    results = dict(_requests(client, url, [tenant_a.pbx_user.pk]))

    assert results == {"GET": 404, "POST": 404}, url
    assert _snapshot() == before


@pytest.mark.parametrize("route", CHILD_ROUTES, ids=lambda r: r.name)
def test_foreign_child_under_own_organization_is_404(
    client: Client, tenant_a: Tenant, tenant_b: Tenant, route: Route
) -> None:
    """B's own org id in the URL does not open A's PBX user or SMS number."""
    client.force_login(tenant_b.reseller)
    url = _url(route, org=tenant_b.org, pbx_user=tenant_a.pbx_user, sms_number=tenant_a.sms_number)
    before = _snapshot()

    results = dict(_requests(client, url, [tenant_b.pbx_user.pk]))

    assert results == {"GET": 404, "POST": 404}, url
    assert _snapshot() == before


@pytest.mark.parametrize("route", CHILD_ROUTES, ids=lambda r: r.name)
def test_child_of_a_sibling_org_under_own_org_is_404(
    client: Client, tenant_a: Tenant, route: Route
) -> None:
    """Even a reseller who may see both orgs cannot reach a row through the wrong org."""
    client.force_login(tenant_a.reseller)
    sibling_user = PbxUser.objects.filter(organization=tenant_a.sibling_org).get()
    sibling_number = SmsNumber.objects.filter(organization=tenant_a.sibling_org).get()
    url = _url(route, org=tenant_a.org, pbx_user=sibling_user, sms_number=sibling_number)
    before = _snapshot()

    results = dict(_requests(client, url, [sibling_user.pk]))

    assert results == {"GET": 404, "POST": 404}, url
    assert _snapshot() == before


@pytest.mark.parametrize("route", ID_ROUTES, ids=lambda r: r.name)
def test_org_admin_gets_404_on_every_route_of_a_sibling_org(
    client: Client, tenant_a: Tenant, route: Route
) -> None:
    client.force_login(tenant_a.org_admin)
    sibling_user = PbxUser.objects.filter(organization=tenant_a.sibling_org).get()
    sibling_number = SmsNumber.objects.filter(organization=tenant_a.sibling_org).get()
    url = _url(route, org=tenant_a.sibling_org, pbx_user=sibling_user, sms_number=sibling_number)
    before = _snapshot()

    results = dict(_requests(client, url, [sibling_user.pk]))

    assert results == {"GET": 404, "POST": 404}, url
    assert _snapshot() == before


def test_org_admin_gets_403_on_create_organization(client: Client, tenant_a: Tenant) -> None:
    client.force_login(tenant_a.org_admin)
    before = _snapshot()

    assert client.get(reverse("organization_create")).status_code == 403
    assert client.post(reverse("organization_create"), HOSTILE_POST).status_code == 403
    assert _snapshot() == before


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
def test_anonymous_is_redirected_to_login_on_every_route(
    client: Client, tenant_a: Tenant, route: Route
) -> None:
    url = _url(route, org=tenant_a.org, pbx_user=tenant_a.pbx_user, sms_number=tenant_a.sms_number)
    before = _snapshot()

    for method in (client.get, client.post):
        response = method(url)
        assert response.status_code == 302, (method, url)
        assert response["Location"].startswith(f"{reverse('login')}?next=")
    assert _snapshot() == before


def test_organization_list_never_includes_foreign_rows(
    client: Client, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    client.force_login(tenant_b.reseller)

    response = client.get(reverse("organization_list"))
    searched = client.get(reverse("organization_list"), {"q": "Alpha"})

    assert {o.account_id for o in response.context["page"].object_list} == {tenant_b.account.pk}
    assert "Alpha" not in response.content.decode()
    assert list(searched.context["page"].object_list) == []


def test_org_admin_list_shows_only_their_organization(client: Client, tenant_a: Tenant) -> None:
    client.force_login(tenant_a.org_admin)

    response = client.get(reverse("organization_list"))

    assert list(response.context["page"].object_list) == [tenant_a.org]
    assert tenant_a.sibling_org.name not in response.content.decode()


def test_dashboard_never_includes_foreign_rows(
    client: Client, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    client.force_login(tenant_b.reseller)

    page = client.get(reverse("dashboard")).content.decode()

    assert tenant_a.org.name not in page
    assert tenant_a.sibling_org.name not in page


def test_organization_page_lists_only_its_own_users_and_numbers(
    client: Client, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    client.force_login(tenant_a.reseller)
    url = reverse("organization_detail", args=[tenant_a.org.pk])

    users_page = client.get(url, {"tab": "users"})
    numbers_page = client.get(url, {"tab": "numbers"})

    assert list(users_page.context["pbx_user_page"].object_list) == [tenant_a.pbx_user]
    assert numbers_page.context["sms_numbers"] == [tenant_a.sms_number]
    for other in (tenant_b.sms_number, *tenant_a.sibling_org.sms_numbers.all()):
        assert other.number not in numbers_page.content.decode()


def test_assign_form_offers_only_the_organizations_users(
    client: Client, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    client.force_login(tenant_a.reseller)
    url = reverse("sms_number_assign", args=[tenant_a.org.pk, tenant_a.sms_number.pk])

    form = client.get(url).context["form"]
    response = client.post(url, {"users": [tenant_b.pbx_user.pk]})

    assert list(form.fields["users"].queryset) == [tenant_a.pbx_user]
    assert "users" in response.context["form"].errors
    assert not tenant_a.sms_number.users.exists()
