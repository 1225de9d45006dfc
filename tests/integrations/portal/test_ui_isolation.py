"""Tenant isolation of the catalog, installation and OAuth pages: every route of the
"catalog" section of `integrations.urls` that takes an id is tried, GET and POST, by people who
must not reach the row — never a sample.

The route table is read from the urlconf (the views of integrations.views.catalog,
.installations and .oauth), so a new route is covered, or — if it takes an id this file does
not know — fails loudly, without editing this file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, reverse

from integrations import urls as integration_urls
from integrations.models import Installation, IntegrationSpec, OAuthState, SpecVersion
from tests.integrations.portal.portal_support import approved_version, bearer_crm_document
from tests.tenants.conftest import Tenant

pytestmark = pytest.mark.django_db

OWN_VIEW_MODULES = {
    "integrations.views.catalog",
    "integrations.views.installations",
    "integrations.views.oauth",
}
ID_KWARGS = {"org_id", "spec_id", "installation_id", "version_id"}

# A body valid for every form of these pages, so a 404 is never a form error in disguise.
HOSTILE_POST = {
    "prop_0": "https://evil.example.com",
    "prop_1": "evil-key",
    "label": "Hijacked",
    "match_policy": "all",
    "create_contacts": "on",
    "method_name": "Users",
    "phone": "+14155550100",
    "decision": "approve",
    "note": "hijacked",
    "force": "1",
    "text": '{"id": "hijack"}',
}


@dataclass(frozen=True)
class Route:
    name: str
    kwargs: frozenset[str]


def _routes() -> list[Route]:
    routes = []
    for pattern in integration_urls.urlpatterns:
        assert isinstance(pattern, URLPattern), "flat urlconf expected"
        if pattern.callback.__module__ not in OWN_VIEW_MODULES:
            continue
        kwargs = frozenset(pattern.pattern.converters)
        unknown = kwargs - ID_KWARGS
        assert not unknown, f"route {pattern.name} takes {unknown}: teach this test about it"
        routes.append(Route(pattern.name, kwargs))
    return routes


ROUTES = _routes()
ID_ROUTES = [r for r in ROUTES if r.kwargs]
ORG_CHILD_ROUTES = [r for r in ROUTES if {"org_id", "spec_id"} <= r.kwargs]


@dataclass
class Objects:
    org: Any
    spec: IntegrationSpec
    installation: Installation
    version: SpecVersion


def _objects(tenant: Tenant, *, org: Any = None) -> Objects:
    org = org or tenant.org
    version = approved_version(
        bearer_crm_document(f"{tenant.account.slug}-{org.pk}-crm"), account=tenant.account
    )
    installation = Installation.objects.create(
        organization=org,
        spec_version=version,
        properties={"Base URL": "http://127.0.0.1:9"},
        secret_properties={"API Key": "alpha-secret-key"},
    )
    submitted = SpecVersion.objects.create(
        spec=version.spec,
        number=version.number + 1,
        document=version.document,
        sha256="0" * 64,
        status=SpecVersion.Status.SUBMITTED,
    )
    return Objects(org=org, spec=version.spec, installation=installation, version=submitted)


def _url(route: Route, objects: Objects, *, org: Any = None) -> str:
    values = {
        "org_id": (org or objects.org).pk,
        "spec_id": objects.spec.pk,
        "installation_id": objects.installation.pk,
        "version_id": objects.version.pk,
    }
    return reverse(f"integrations:{route.name}", kwargs={k: values[k] for k in route.kwargs})


def _snapshot() -> tuple:
    return (
        sorted(
            (i.pk, i.organization_id, i.label, i.status, str(i.properties), str(i.tokens))
            for i in Installation.objects.all()
        ),
        sorted(SpecVersion.objects.values_list("pk", "status", "number")),
        sorted(IntegrationSpec.objects.values_list("pk", "account_id", "spec_id")),
        OAuthState.objects.count(),
    )


def _requests(client: Client, url: str) -> Iterator[tuple[str, int]]:
    yield "GET", client.get(url).status_code
    yield "POST", client.post(url, HOSTILE_POST).status_code


def test_the_route_table_covers_every_kind_of_object() -> None:
    names = {r.name for r in ID_ROUTES}
    assert {"organization_integrations", "catalog", "installation_create"} <= names
    assert {"spec_detail", "spec_review"} <= names
    assert {
        "installation_detail",
        "installation_edit",
        "installation_upgrade",
        "installation_delete",
        "installation_test",
        "oauth_connect",
        "oauth_disconnect",
    } <= names
    assert {r.name for r in ROUTES} >= {"oauth_callback", "spec_upload", "spec_list"}


@pytest.mark.parametrize("route", ID_ROUTES, ids=lambda r: r.name)
def test_reseller_of_another_account_gets_404_on_every_route(
    client: Client, tenant_a: Tenant, tenant_b: Tenant, route: Route
) -> None:
    objects = _objects(tenant_a)
    client.force_login(tenant_b.reseller)
    url = _url(route, objects)
    before = _snapshot()

    results = dict(_requests(client, url))

    assert results == {"GET": 404, "POST": 404}, url
    assert _snapshot() == before


@pytest.mark.parametrize("route", ORG_CHILD_ROUTES, ids=lambda r: r.name)
def test_foreign_spec_under_own_organization_is_404(
    client: Client, tenant_a: Tenant, tenant_b: Tenant, route: Route
) -> None:
    """B's own org id in the URL does not open A's custom spec."""
    objects = _objects(tenant_a)
    client.force_login(tenant_b.reseller)
    url = _url(route, objects, org=tenant_b.org)
    before = _snapshot()

    results = dict(_requests(client, url))

    assert results == {"GET": 404, "POST": 404}, url
    assert _snapshot() == before


@pytest.mark.parametrize(
    "route",
    [r for r in ID_ROUTES if r.kwargs & {"org_id", "installation_id"}],
    ids=lambda r: r.name,
)
def test_org_admin_gets_404_on_every_route_of_a_sibling_org(
    client: Client, tenant_a: Tenant, route: Route
) -> None:
    objects = _objects(tenant_a, org=tenant_a.sibling_org)
    client.force_login(tenant_a.org_admin)
    url = _url(route, objects)
    before = _snapshot()

    results = dict(_requests(client, url))

    assert results == {"GET": 404, "POST": 404}, url
    assert _snapshot() == before


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
def test_anonymous_is_redirected_to_login_on_every_route(
    client: Client, tenant_a: Tenant, route: Route
) -> None:
    objects = _objects(tenant_a)
    url = _url(route, objects)
    before = _snapshot()

    for method in (client.get, client.post):
        response = method(url)
        assert response.status_code == 302, (method, url)
        assert response["Location"].startswith(f"{reverse('login')}?next=")
    assert _snapshot() == before


def test_lists_never_include_foreign_rows(
    client: Client, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    objects = _objects(tenant_a)
    client.force_login(tenant_b.reseller)

    spec_list = client.get(reverse("integrations:spec_list")).content.decode()
    catalog = client.get(reverse("integrations:catalog", args=[tenant_b.org.pk]))
    tab = client.get(reverse("integrations:organization_integrations", args=[tenant_b.org.pk]))

    assert objects.spec.name not in spec_list
    assert objects.spec.spec_id not in catalog.content.decode()
    assert list(tab.context["installations"]) == []
    assert client.get(reverse("integrations:spec_review_list")).status_code == 404


def test_a_foreign_state_cannot_connect_an_installation(
    client: Client, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    objects = _objects(tenant_a)
    OAuthState.objects.create(
        state="alpha-state",
        installation=objects.installation,
        user=tenant_a.reseller,
        redirect_uri="http://testserver/integrations/oauth/callback/",
        expires_at="2999-01-01T00:00:00Z",
    )
    client.force_login(tenant_b.reseller)
    before = _snapshot()

    response = client.get(
        reverse("integrations:oauth_callback"), {"code": "x", "state": "alpha-state"}
    )

    assert response.status_code == 302 and response["Location"] == reverse("dashboard")
    assert _snapshot() == before
    assert OAuthState.objects.get().used_at is None
