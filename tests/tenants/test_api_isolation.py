"""Tenant isolation of the REST API, for every route and method.

The cases are generated from one table, `ROUTES`, and `test_the_table_covers_every_api_route`
fails when a route or method is added to `tenants.api_urls` without a row here.
Another tenant's row is always a 404 (never a 403, which would confirm it exists), and a
refused write leaves the row untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.urls import URLPattern, reverse
from rest_framework.test import APIClient

from tenants import api_urls
from tenants.models import Organization, PbxUser, SmsNumber
from tests.factories import PbxUserFactory, UserFactory
from tests.tenants.conftest import Tenant


@dataclass(frozen=True)
class Target:
    """The objects a case points at: an organization and, for nested routes, a row of it."""

    org: Organization
    pbx_user: PbxUser
    sms_number: SmsNumber


@dataclass(frozen=True)
class Route:
    name: str
    methods: tuple[str, ...]
    kwargs: Callable[[Target], dict[str, int]]
    # A valid body for writes, so a 404 is never a 400 in disguise.
    payload: Callable[[Target], dict[str, Any]]


def _org_payload(target: Target) -> dict[str, Any]:
    return {"name": "Renamed", "pbx_domain": "renamed.example.com", "default_region": "US"}


def _user_payload(target: Target) -> dict[str, Any]:
    return {"extension": "999", "name": "Intruder", "email": "", "mobile": ""}


def _sms_payload(target: Target) -> dict[str, Any]:
    return {"number": "+14155550999", "label": "intruder", "users": []}


ROUTES: list[Route] = [
    Route("organization-list", ("GET", "POST"), lambda t: {}, _org_payload),
    Route(
        "organization-detail",
        ("GET", "PUT", "PATCH", "DELETE"),
        lambda t: {"org_id": t.org.pk},
        _org_payload,
    ),
    Route(
        "organization-webhook-secret-rotate",
        ("POST",),
        lambda t: {"org_id": t.org.pk},
        lambda t: {},
    ),
    Route("pbx-user-list", ("GET", "POST"), lambda t: {"org_id": t.org.pk}, _user_payload),
    Route(
        "pbx-user-detail",
        ("GET", "PUT", "PATCH", "DELETE"),
        lambda t: {"org_id": t.org.pk, "pbx_user_id": t.pbx_user.pk},
        _user_payload,
    ),
    Route("sms-number-list", ("GET", "POST"), lambda t: {"org_id": t.org.pk}, _sms_payload),
    Route(
        "sms-number-detail",
        ("GET", "PUT", "PATCH", "DELETE"),
        lambda t: {"org_id": t.org.pk, "sms_number_id": t.sms_number.pk},
        _sms_payload,
    ),
]

ALL_CASES = [(route, method) for route in ROUTES for method in route.methods]
# The organization list is not about one organization: it is covered by the list tests.
SCOPED_CASES = [(r, m) for r, m in ALL_CASES if r.name != "organization-list"]


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    """The factories set a password on every user; the default hasher makes that slow."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _case_id(case: tuple[Route, str]) -> str:
    route, method = case
    return f"{method} {route.name}"


def _url(route: Route, target: Target) -> str:
    return reverse(f"api-v1:{route.name}", kwargs=route.kwargs(target))


def _call(client: APIClient, method: str, url: str, payload: dict[str, Any]) -> Any:
    if method in ("GET", "DELETE"):
        return getattr(client, method.lower())(url)
    return getattr(client, method.lower())(url, payload, format="json")


def _client_for(user: object) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def _snapshot(target: Target) -> dict[str, Any]:
    """What a refused write must leave unchanged."""
    org = Organization.objects.get(pk=target.org.pk)
    pbx_user = PbxUser.objects.get(pk=target.pbx_user.pk)
    sms_number = SmsNumber.objects.get(pk=target.sms_number.pk)
    return {
        "org": (org.name, org.pbx_domain, org.default_region, org.slug, org.webhook_secret),
        "pbx_user": (pbx_user.extension, pbx_user.name, pbx_user.email),
        "sms_number": (sms_number.number, sms_number.label, list(sms_number.users.all())),
        "pbx_user_count": PbxUser.objects.filter(organization=org).count(),
        "sms_number_count": SmsNumber.objects.filter(organization=org).count(),
    }


def _sibling_target(tenant: Tenant) -> Target:
    sibling = tenant.sibling_org
    return Target(
        org=sibling,
        pbx_user=PbxUser.objects.filter(organization=sibling).get(),
        sms_number=SmsNumber.objects.filter(organization=sibling).get(),
    )


def _own_target(tenant: Tenant) -> Target:
    return Target(org=tenant.org, pbx_user=tenant.pbx_user, sms_number=tenant.sms_number)


def test_the_table_covers_every_api_route() -> None:
    """Every route of `tenants.api_urls` and every method its view implements is in ROUTES."""
    declared = {(r.name, m) for r in ROUTES for m in r.methods}
    served: set[tuple[str, str]] = set()
    for pattern in api_urls.urlpatterns:
        assert isinstance(pattern, URLPattern)
        view_class = pattern.callback.view_class
        for method in ("get", "post", "put", "patch", "delete"):
            if hasattr(view_class, method):
                served.add((pattern.name, method.upper()))
    assert declared == served


@pytest.mark.parametrize("case", SCOPED_CASES, ids=_case_id)
def test_a_reseller_gets_404_for_another_resellers_objects(
    case: tuple[Route, str], tenant_a: Tenant, tenant_b: Tenant
) -> None:
    route, method = case
    target = _own_target(tenant_a)
    before = _snapshot(target)

    response = _call(
        _client_for(tenant_b.reseller), method, _url(route, target), route.payload(target)
    )

    assert response.status_code == 404, response.content
    assert response.json() == {"message": "Not found.", "errors": {}}
    assert _snapshot(target) == before


@pytest.mark.parametrize("case", SCOPED_CASES, ids=_case_id)
def test_an_org_admin_gets_404_on_a_sibling_org_of_the_same_reseller(
    case: tuple[Route, str], tenant_a: Tenant
) -> None:
    route, method = case
    target = _sibling_target(tenant_a)
    before = _snapshot(target)

    response = _call(
        _client_for(tenant_a.org_admin), method, _url(route, target), route.payload(target)
    )

    assert response.status_code == 404, response.content
    assert _snapshot(target) == before


NESTED_ROW_CASES = [
    (r, m) for r, m in SCOPED_CASES if r.name in ("pbx-user-detail", "sms-number-detail")
]


@pytest.mark.parametrize("case", NESTED_ROW_CASES, ids=_case_id)
def test_a_foreign_row_is_404_even_under_ones_own_org(
    case: tuple[Route, str], tenant_a: Tenant, tenant_b: Tenant
) -> None:
    """B's reseller names its own org in the URL but A's user / number as the row."""
    route, method = case
    foreign = _own_target(tenant_a)
    target = Target(org=tenant_b.org, pbx_user=foreign.pbx_user, sms_number=foreign.sms_number)
    before = _snapshot(foreign)

    response = _call(
        _client_for(tenant_b.reseller), method, _url(route, target), route.payload(target)
    )

    assert response.status_code == 404, response.content
    assert _snapshot(foreign) == before


@pytest.mark.parametrize("case", SCOPED_CASES, ids=_case_id)
def test_a_user_without_membership_gets_404_everywhere(
    case: tuple[Route, str], tenant_a: Tenant
) -> None:
    route, method = case
    target = _own_target(tenant_a)
    outsider = UserFactory(username="outsider")

    response = _call(_client_for(outsider), method, _url(route, target), route.payload(target))

    assert response.status_code == 404, response.content


@pytest.mark.parametrize("case", ALL_CASES, ids=_case_id)
def test_an_anonymous_request_is_refused(case: tuple[Route, str], tenant_a: Tenant) -> None:
    route, method = case
    target = _own_target(tenant_a)
    before = _snapshot(target)

    response = _call(APIClient(), method, _url(route, target), route.payload(target))

    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["message"]
    assert _snapshot(target) == before


# --- Lists never include foreign rows --------------------------------------------------------


def _ids(response: Any) -> set[int]:
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


def test_organization_list_shows_only_the_resellers_own_orgs(
    tenant_a: Tenant, tenant_b: Tenant
) -> None:
    url = reverse("api-v1:organization-list")

    assert _ids(_client_for(tenant_b.reseller).get(url)) == {
        tenant_b.org.pk,
        tenant_b.sibling_org.pk,
    }
    assert _ids(_client_for(tenant_a.reseller).get(url)) == {
        tenant_a.org.pk,
        tenant_a.sibling_org.pk,
    }


def test_organization_search_never_matches_foreign_orgs(tenant_a: Tenant, tenant_b: Tenant) -> None:
    url = reverse("api-v1:organization-list")

    assert _ids(_client_for(tenant_b.reseller).get(url, {"search": "Alpha"})) == set()


def test_an_org_admin_lists_only_its_own_org(tenant_a: Tenant, tenant_b: Tenant) -> None:
    url = reverse("api-v1:organization-list")

    assert _ids(_client_for(tenant_a.org_admin).get(url)) == {tenant_a.org.pk}


def test_a_user_without_membership_lists_nothing(tenant_a: Tenant) -> None:
    response = _client_for(UserFactory(username="outsider")).get(
        reverse("api-v1:organization-list")
    )

    assert response.json()["count"] == 0


@pytest.mark.parametrize("route_name", ["pbx-user-list", "sms-number-list"])
def test_nested_lists_show_only_the_orgs_own_rows(
    route_name: str, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    PbxUserFactory(organization=tenant_b.org)
    url = reverse(f"api-v1:{route_name}", kwargs={"org_id": tenant_a.org.pk})
    model = PbxUser if route_name == "pbx-user-list" else SmsNumber

    ids = _ids(_client_for(tenant_a.reseller).get(url))

    assert ids == set(model.objects.filter(organization=tenant_a.org).values_list("pk", flat=True))
    assert ids


# --- Writes that name another tenant's rows in the body ---------------------------------------


def test_an_org_cannot_be_created_in_another_resellers_account(
    tenant_a: Tenant, tenant_b: Tenant
) -> None:
    response = _client_for(tenant_b.reseller).post(
        reverse("api-v1:organization-list"),
        {"name": "Trojan", "account": tenant_a.account.pk},
        format="json",
    )

    assert response.status_code == 400
    assert "account" in response.json()["errors"]
    assert not Organization.objects.filter(name="Trojan").exists()


def test_an_sms_number_cannot_be_assigned_to_another_tenants_user(
    tenant_a: Tenant, tenant_b: Tenant
) -> None:
    response = _client_for(tenant_b.reseller).post(
        reverse("api-v1:sms-number-list", kwargs={"org_id": tenant_b.org.pk}),
        {"number": "+14155550999", "users": [tenant_a.pbx_user.pk]},
        format="json",
    )

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["users"]
    assert not SmsNumber.objects.filter(number="+14155550999").exists()


def test_an_sms_number_cannot_be_reassigned_to_a_sibling_orgs_user(tenant_a: Tenant) -> None:
    sibling_user = PbxUser.objects.filter(organization=tenant_a.sibling_org).get()
    url = reverse(
        "api-v1:sms-number-detail",
        kwargs={"org_id": tenant_a.org.pk, "sms_number_id": tenant_a.sms_number.pk},
    )

    response = _client_for(tenant_a.reseller).patch(
        url, {"users": [sibling_user.pk]}, format="json"
    )

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["users"]
    assert list(tenant_a.sms_number.users.all()) == []
