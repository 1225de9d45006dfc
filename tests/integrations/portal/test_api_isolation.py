"""Tenant isolation of the integrations REST API, for every route and method.

The cases are generated from one table, `ROUTES`, and `test_the_table_covers_every_api_route`
fails when a route or method is added to `integrations.api_urls` without a row here.
Another tenant's row is always a 404 (never a 403, which would confirm it exists), a refused
write leaves everything untouched, and an anonymous request is a 401 everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.urls import URLPattern, reverse
from rest_framework.test import APIClient

from integrations import api_urls
from integrations.models import (
    CrmUser,
    DeliveryLogEntry,
    Installation,
    IntegrationSpec,
    OAuthState,
    SpecVersion,
    UserFetch,
    UserMapping,
)
from tenants.models import Organization, PbxUser, SmsNumber
from tests.factories import (
    FACTORY_CRM_DOCUMENT,
    CrmUserFactory,
    DeliveryLogEntryFactory,
    IntegrationSpecFactory,
    SpecVersionFactory,
    UserFactory,
    UserMappingFactory,
)
from tests.integrations.portal.mapping_support import Tenant, crm_installation, sms_installation

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class Target:
    """The objects a case points at, all in one organization (`spec` is its account's)."""

    org: Organization
    installation: Installation
    sms_installation: Installation
    pbx_user: PbxUser
    sms_number: SmsNumber
    crm_user: CrmUser
    fetch: UserFetch
    entry: DeliveryLogEntry
    spec: IntegrationSpec


@dataclass(frozen=True)
class Route:
    name: str
    methods: tuple[str, ...]
    kwargs: Callable[[Target], dict[str, int]]
    # A valid body for writes, so a 404 is never a 400 in disguise.
    payload: Callable[[Target], dict[str, Any]]


def _none(target: Target) -> dict[str, Any]:
    return {}


def _installation_payload(target: Target) -> dict[str, Any]:
    return {
        "spec": target.installation.spec_version.spec_id,
        "label": "Hijacked",
        "properties": {"Base URL": "https://evil.example.com"},
        "secret_properties": {"API Key": "stolen"},
    }


ROUTES: list[Route] = [
    Route("catalog", ("GET",), lambda t: {"org_id": t.org.pk}, _none),
    Route("spec-list", ("GET",), lambda t: {}, _none),
    Route(
        "spec-upload",
        ("POST",),
        lambda t: {},
        lambda t: {"document": {**FACTORY_CRM_DOCUMENT, "id": "intruder-crm"}},
    ),
    Route("spec-detail", ("GET",), lambda t: {"spec_id": t.spec.pk}, _none),
    Route(
        "installation-list",
        ("GET", "POST"),
        lambda t: {"org_id": t.org.pk},
        _installation_payload,
    ),
    Route(
        "installation-detail",
        ("GET", "PUT", "PATCH", "DELETE"),
        lambda t: {"installation_id": t.installation.pk},
        _installation_payload,
    ),
    Route(
        "installation-test",
        ("POST",),
        lambda t: {"installation_id": t.installation.pk},
        lambda t: {"method_name": "Users"},
    ),
    Route(
        "installation-oauth-connect",
        ("POST",),
        lambda t: {"installation_id": t.installation.pk},
        _none,
    ),
    Route(
        "installation-oauth-disconnect",
        ("POST",),
        lambda t: {"installation_id": t.installation.pk},
        _none,
    ),
    Route(
        "installation-upgrade",
        ("POST",),
        lambda t: {"installation_id": t.installation.pk},
        lambda t: {"properties": {"Base URL": "https://evil.example.com"}},
    ),
    Route("user-mapping-list", ("GET",), lambda t: {"installation_id": t.installation.pk}, _none),
    Route(
        "user-mapping-detail",
        ("GET", "PUT", "DELETE"),
        lambda t: {"installation_id": t.installation.pk, "pbx_user_id": t.pbx_user.pk},
        lambda t: {"crm_user": t.crm_user.pk},
    ),
    Route("crm-user-list", ("GET",), lambda t: {"installation_id": t.installation.pk}, _none),
    Route(
        "crm-user-fetch",
        ("GET", "POST"),
        lambda t: {"installation_id": t.installation.pk},
        _none,
    ),
    Route(
        "crm-user-fetch-detail",
        ("GET",),
        lambda t: {"installation_id": t.installation.pk, "fetch_id": t.fetch.pk},
        _none,
    ),
    Route(
        "installation-sms-number-list",
        ("GET",),
        lambda t: {"installation_id": t.sms_installation.pk},
        _none,
    ),
    Route(
        "installation-sms-number-detail",
        ("PUT", "DELETE"),
        lambda t: {"installation_id": t.sms_installation.pk, "sms_number_id": t.sms_number.pk},
        lambda t: {"users": [t.pbx_user.pk]},
    ),
    Route("delivery-log-list", ("GET",), lambda t: {"installation_id": t.installation.pk}, _none),
    Route("delivery-log-detail", ("GET",), lambda t: {"entry_id": t.entry.pk}, _none),
]

ALL_CASES = [(route, method) for route in ROUTES for method in route.methods]
# Routes about no object of an organization: covered by the list and upload tests below.
UNSCOPED = {"spec-list", "spec-upload"}
SCOPED_CASES = [(r, m) for r, m in ALL_CASES if r.name not in UNSCOPED]
# A custom spec belongs to an account, not to one organization: an org admin of the account
# may read it, so it has no place in the sibling-organization cases.
ORG_SCOPED_CASES = [(r, m) for r, m in SCOPED_CASES if r.name != "spec-detail"]
NESTED_ROW_CASES = [
    (r, m)
    for r, m in SCOPED_CASES
    if r.name in ("user-mapping-detail", "installation-sms-number-detail", "crm-user-fetch-detail")
]


def _case_id(case: tuple[Route, str]) -> str:
    route, method = case
    return f"{method} {route.name}"


def _url(route: Route, target: Target) -> str:
    return reverse(f"integrations-api:{route.name}", kwargs=route.kwargs(target))


def _call(client: APIClient, method: str, url: str, payload: dict[str, Any]) -> Any:
    if method in ("GET", "DELETE"):
        return getattr(client, method.lower())(url)
    return getattr(client, method.lower())(url, payload, format="json")


def _client_for(user: object) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def _target(organization: Organization) -> Target:
    """An installation of each class in `organization`, with a mapping, a fetch, a log entry,
    a number and a custom spec of its account."""
    installation = crm_installation(organization)
    sms = sms_installation(organization)
    mapping = UserMappingFactory(installation=installation)
    sms_number = SmsNumber.objects.filter(organization=organization).first()
    spec = SpecVersionFactory(spec=IntegrationSpecFactory(account=organization.account)).spec
    return Target(
        org=organization,
        installation=installation,
        sms_installation=sms,
        pbx_user=mapping.pbx_user,
        sms_number=sms_number,
        crm_user=CrmUserFactory(installation=installation),
        fetch=UserFetch.objects.create(installation=installation, state="done", fetched=1),
        entry=DeliveryLogEntryFactory(installation=installation),
        spec=spec,
    )


@pytest.fixture
def target_a(tenant_a: Tenant) -> Target:
    return _target(tenant_a.org)


@pytest.fixture
def sibling_target_a(tenant_a: Tenant) -> Target:
    return _target(tenant_a.sibling_org)


@pytest.fixture
def target_b(tenant_b: Tenant) -> Target:
    return _target(tenant_b.org)


def _snapshot() -> dict[str, Any]:
    """Everything a refused request could change."""
    return {
        "installations": sorted(
            (i.pk, i.label, i.status, str(i.properties), str(i.secret_properties))
            for i in Installation.objects.all()
        ),
        "mappings": sorted(
            UserMapping.objects.values_list("pk", "pbx_user_id", "crm_user_id", "manual")
        ),
        "numbers": sorted(SmsNumber.objects.values_list("pk", "installation_id")),
        "assignments": sorted(
            SmsNumber.users.through.objects.values_list("smsnumber_id", "pbxuser_id")
        ),
        "fetches": UserFetch.objects.count(),
        "crm_users": CrmUser.objects.count(),
        "log": DeliveryLogEntry.objects.count(),
        "oauth_states": OAuthState.objects.count(),
        "spec_versions": SpecVersion.objects.count(),
    }


def test_the_table_covers_every_api_route() -> None:
    """Every route of `integrations.api_urls` and every method its view implements is here."""
    declared = {(r.name, m) for r in ROUTES for m in r.methods}
    served: set[tuple[str, str]] = set()
    for pattern in api_urls.urlpatterns:
        assert isinstance(pattern, URLPattern)
        view_class = pattern.callback.view_class
        for method in ("get", "post", "put", "patch", "delete"):
            if hasattr(view_class, method):
                served.add((pattern.name, method.upper()))
    assert declared == served


@pytest.mark.parametrize("route", [r for r in ROUTES if "GET" in r.methods], ids=lambda r: r.name)
def test_the_owner_reaches_every_read_route(
    route: Route, tenant_a: Tenant, target_a: Target
) -> None:
    """The table's URLs are right: the same requests succeed for the tenant itself."""
    response = _client_for(tenant_a.reseller).get(_url(route, target_a))

    assert response.status_code == 200, response.content


@pytest.mark.parametrize("case", SCOPED_CASES, ids=_case_id)
def test_a_reseller_gets_404_for_another_resellers_objects(
    case: tuple[Route, str], tenant_b: Tenant, target_a: Target, target_b: Target
) -> None:
    route, method = case
    before = _snapshot()

    response = _call(
        _client_for(tenant_b.reseller), method, _url(route, target_a), route.payload(target_b)
    )

    assert response.status_code == 404, response.content
    assert response.json() == {"message": "Not found.", "errors": {}}
    assert _snapshot() == before


@pytest.mark.parametrize("case", ORG_SCOPED_CASES, ids=_case_id)
def test_an_org_admin_gets_404_on_a_sibling_org_of_the_same_reseller(
    case: tuple[Route, str], tenant_a: Tenant, sibling_target_a: Target, target_a: Target
) -> None:
    route, method = case
    before = _snapshot()

    response = _call(
        _client_for(tenant_a.org_admin),
        method,
        _url(route, sibling_target_a),
        route.payload(target_a),
    )

    assert response.status_code == 404, response.content
    assert _snapshot() == before


@pytest.mark.parametrize("case", NESTED_ROW_CASES, ids=_case_id)
def test_a_foreign_row_is_404_even_under_ones_own_installation(
    case: tuple[Route, str], tenant_b: Tenant, target_a: Target, target_b: Target
) -> None:
    """B names its own installation in the URL but A's PBX user, number or fetch."""
    route, method = case
    mixed = Target(
        **{
            **target_b.__dict__,
            "pbx_user": target_a.pbx_user,
            "sms_number": target_a.sms_number,
            "fetch": target_a.fetch,
        }
    )
    before = _snapshot()

    response = _call(
        _client_for(tenant_b.reseller), method, _url(route, mixed), route.payload(target_b)
    )

    assert response.status_code == 404, response.content
    assert _snapshot() == before


@pytest.mark.parametrize("case", SCOPED_CASES, ids=_case_id)
def test_a_user_without_membership_gets_404_everywhere(
    case: tuple[Route, str], target_a: Target
) -> None:
    route, method = case
    outsider = UserFactory(username="outsider")
    before = _snapshot()

    response = _call(_client_for(outsider), method, _url(route, target_a), route.payload(target_a))

    assert response.status_code == 404, response.content
    assert _snapshot() == before


@pytest.mark.parametrize("case", ALL_CASES, ids=_case_id)
def test_an_anonymous_request_is_refused(case: tuple[Route, str], target_a: Target) -> None:
    route, method = case
    before = _snapshot()

    response = _call(APIClient(), method, _url(route, target_a), route.payload(target_a))

    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["message"]
    assert _snapshot() == before


# --- Lists and unscoped routes never reach foreign rows ----------------------------------------


def test_spec_list_never_shows_another_accounts_custom_spec(
    tenant_b: Tenant, target_a: Target, target_b: Target
) -> None:
    response = _client_for(tenant_b.reseller).get(reverse("integrations-api:spec-list"))

    ids = {row["id"] for row in response.json()["results"]}
    assert target_b.spec.pk in ids and target_a.spec.pk not in ids


def test_a_spec_cannot_be_uploaded_into_another_resellers_account(
    tenant_a: Tenant, tenant_b: Tenant
) -> None:
    before = _snapshot()

    response = _client_for(tenant_b.reseller).post(
        reverse("integrations-api:spec-upload"),
        {"account": tenant_a.account.pk, "document": {**FACTORY_CRM_DOCUMENT, "id": "trojan"}},
        format="json",
    )

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["account"]
    assert _snapshot() == before


def test_another_accounts_custom_spec_cannot_be_installed(
    tenant_b: Tenant, target_a: Target
) -> None:
    before = _snapshot()

    response = _client_for(tenant_b.reseller).post(
        reverse("integrations-api:installation-list", kwargs={"org_id": tenant_b.org.pk}),
        {"spec": target_a.spec.pk, "properties": {}, "secret_properties": {}},
        format="json",
    )

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["spec"]
    assert _snapshot() == before


def test_a_crm_user_of_another_tenant_cannot_be_chosen(
    tenant_b: Tenant, target_a: Target, target_b: Target
) -> None:
    before = _snapshot()

    response = _client_for(tenant_b.reseller).put(
        reverse(
            "integrations-api:user-mapping-detail",
            kwargs={
                "installation_id": target_b.installation.pk,
                "pbx_user_id": target_b.pbx_user.pk,
            },
        ),
        {"crm_user": target_a.crm_user.pk},
        format="json",
    )

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["crm_user"]
    assert _snapshot() == before


def test_a_number_cannot_be_assigned_to_another_tenants_user(
    tenant_b: Tenant, target_a: Target, target_b: Target
) -> None:
    before = _snapshot()

    response = _client_for(tenant_b.reseller).put(
        reverse(
            "integrations-api:installation-sms-number-detail",
            kwargs={
                "installation_id": target_b.sms_installation.pk,
                "sms_number_id": target_b.sms_number.pk,
            },
        ),
        {"users": [target_a.pbx_user.pk]},
        format="json",
    )

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["users"]
    assert _snapshot() == before
