"""Tenant isolation and secret hygiene of the WHOLE URL conf, not one area's table.

Every route reachable from `portal.urls` (minus the admin, OAuth2 provider, schema/docs,
login/logout, health check and the secret-authenticated webhook receivers) is found by walking
`django.urls.get_resolver()`. Each path parameter is filled *by name* from the objects of
tenant A (`params` in `_build_world`); a parameter name missing there fails the suite, so a
new route cannot slip by untested. Then:

- tenant B's reseller admin gets 404 (or 405 for a method the route does not take, or 403 on
  the few staff-only pages in `FORBIDDEN_OK`) on every route with a parameter, for GET and
  POST (and PUT, PATCH, DELETE on the API), and no row of the database changes; on routes
  without parameters (B's own lists and create forms) nothing of A is shown or changed;
- a child of A under B's own parent (`/orgs/<B's org>/callbacks/<A's callback>/`) is a 404 too;
- an anonymous client is sent to the login page (web UI) or refused with 401/403 (API);
- tenant A's own reseller admin, on GET of every route, never sees a secret: a secret
  property, OAuth tokens, the organization's webhook secret, a callback's Basic password or
  signing secret; nor is one logged, and each is encrypted in its database column.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.apps import apps
from django.db import connection
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RoutePattern
from django.utils import timezone
from rest_framework.test import APIClient

from integrations.callbacks import callback_subscription_create
from integrations.models import (
    Call,
    CallActivity,
    CallbackDelivery,
    CallbackSubscription,
    InboxEvent,
    Installation,
    Message,
    UserFetch,
)
from tenants.models import Organization
from tests.factories import (
    CrmUserFactory,
    DeliveryLogEntryFactory,
    InstallationFactory,
    IntegrationSpecFactory,
    SpecVersionFactory,
    UserMappingFactory,
)
from tests.tenants.conftest import Tenant, tenant_a, tenant_b

__all__ = ["tenant_a", "tenant_b"]

pytestmark = pytest.mark.django_db

# Route prefixes (as written in the URL conf, without a leading slash) out of scope: other
# authentication (admin, OAuth2 provider, login), public pages, and receivers authenticated by
# a secret rather than a user.
EXCLUDED_PREFIXES: tuple[str, ...] = (
    "admin/",
    "o/",
    "static/",
    "media/",
    "api/schema/",
    "api/docs/",
    "login/",
    "logout/",
    "healthz",
    "api/v1/hooks/",
    "bench/",
)
# Regex routes out of scope (the Ringotel-style SMS receiver).
EXCLUDED_REGEX_NAMES: frozenset[str] = frozenset({"sms-webhook"})

# Routes that are account-level, not tenant data: an outsider is refused with 403 there.
FORBIDDEN_OK: frozenset[str] = frozenset({"integrations:spec_review"})

# Distinctive secrets of tenant A: none may ever appear in a response.
SECRET_PROPERTY = "S3CRET-prop-9f2"
SECRET_ACCESS_TOKEN = "S3CRET-access-7c1"
SECRET_REFRESH_TOKEN = "S3CRET-refresh-4e8"
SECRET_WEBHOOK = "S3CRET-whsec-org-a51"
SECRET_CALLBACK_PASSWORD = "S3CRET-basic-pw-3d0"
SECRET_SIGNING = "S3CRET-signing-b77"
SECRETS: tuple[str, ...] = (
    SECRET_PROPERTY,
    SECRET_ACCESS_TOKEN,
    SECRET_REFRESH_TOKEN,
    SECRET_WEBHOOK,
    SECRET_CALLBACK_PASSWORD,
    SECRET_SIGNING,
)
# Names of tenant A's rows that another tenant must never see on its own lists.
A_MARKERS: tuple[str, ...] = ("Alpha Dental", "Alpha Sibling Clinic", "ALPHA-PRIVATE")


@dataclass(frozen=True)
class Route:
    """One endpoint of the URL conf: its full route string and its (namespaced) name."""

    route: str
    name: str

    @property
    def params(self) -> list[str]:
        return re.findall(r"<(?:[^>:]+:)?([^>]+)>", self.route)

    @property
    def is_api(self) -> bool:
        return self.route.startswith("api/")

    def url(self, values: dict[str, int]) -> str:
        def fill(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in values:
                raise AssertionError(
                    f"route {self.name!r} ({self.route}) has a parameter {name!r} this test does "
                    f"not know how to fill: add it to `params` in _build_world() of {__file__}"
                )
            return str(values[name])

        return "/" + re.sub(r"<(?:[^>:]+:)?([^>]+)>", fill, self.route) + QUERY.get(self.name, "")


def _walk(resolver: URLResolver, prefix: str = "", namespace: str = "") -> Iterator[Route]:
    for entry in resolver.url_patterns:
        pattern = entry.pattern
        if isinstance(entry, URLResolver):
            ns = namespace
            if entry.namespace:
                ns = f"{namespace}{entry.namespace}:"
            sub = prefix + str(pattern).lstrip("^")
            if sub.startswith(EXCLUDED_PREFIXES):
                continue
            if not isinstance(pattern, RoutePattern):
                raise AssertionError(
                    f"regex include {sub!r} cannot be filled by parameter name: "
                    f"write it with path() or teach {__file__} about it"
                )
            yield from _walk(entry, sub, ns)
        elif isinstance(entry, URLPattern):
            name = f"{namespace}{entry.name or ''}"
            if not isinstance(pattern, RoutePattern):
                if entry.name in EXCLUDED_REGEX_NAMES or (prefix + str(pattern)).lstrip(
                    "^"
                ).startswith(EXCLUDED_PREFIXES):
                    continue
                raise AssertionError(
                    f"regex route {name!r} ({pattern}) cannot be filled by parameter name: "
                    f"write it with path() or teach {__file__} about it"
                )
            full = prefix + str(pattern)
            if full.startswith(EXCLUDED_PREFIXES):
                continue
            yield Route(full, name)


def all_routes() -> list[Route]:
    return list(_walk(get_resolver()))


# --- tenant A's objects --------------------------------------------------------------------


@dataclass
class World:
    a: Tenant
    b: Tenant
    params: dict[str, int]


def _build_world(a: Tenant, b: Tenant) -> World:
    org = a.org
    org.webhook_secret = SECRET_WEBHOOK
    org.save()
    custom_spec = IntegrationSpecFactory(account=a.account, name="ALPHA-PRIVATE CRM")
    version = SpecVersionFactory(spec=custom_spec)
    submitted = SpecVersionFactory(spec=custom_spec, status="submitted")
    installation: Installation = InstallationFactory(
        organization=org,
        spec_version=version,
        label="ALPHA-PRIVATE install",
        secret_properties={"API Key": SECRET_PROPERTY},
        tokens={
            "access_token": SECRET_ACCESS_TOKEN,
            "refresh_token": SECRET_REFRESH_TOKEN,
            "expires_at": 4102444800.0,
        },
    )
    crm_user = CrmUserFactory(installation=installation)
    UserMappingFactory(installation=installation, pbx_user=a.pbx_user, crm_user=crm_user)
    fetch = UserFetch.objects.create(installation=installation, state="done", fetched=1)
    entry = DeliveryLogEntryFactory(installation=installation)
    call = Call.objects.create(
        organization=org,
        call_id="ALPHA-PRIVATE-call",
        status="completed",
        data={
            "direction": "inbound",
            "caller_number": "+14155550100",
            "caller_name": "Jane Doe",
            "called_number": "+18185559876",
            "called_name": "",
            "extension": a.pbx_user.extension,
            "phone": "+14155550100",
            "start": "2025-01-02T03:04:05Z",
            "duration": 42,
            "recording_url": "",
        },
    )
    activity = CallActivity.objects.create(installation=installation, call=call, state="held")
    message = Message.objects.create(
        organization=org,
        installation=installation,
        sms_number=a.sms_number,
        direction="inbound",
        from_number="+14155550100",
        to_number=a.sms_number.number,
        content="ALPHA-PRIVATE message",
        status="received",
    )
    event = InboxEvent.objects.create(
        source="pbx",
        organization=org,
        event_type="call",
        dedup_key="alpha-1",
        received_at=timezone.now(),
        state="failed",
    )
    subscription, _ = callback_subscription_create(
        organization=org,
        name="ALPHA-PRIVATE callback",
        callback_type="sms",
        url="https://example.com/cb",
        auth_username="alpha",
        auth_password=SECRET_CALLBACK_PASSWORD,
        signing_secret=SECRET_SIGNING,
    )
    delivery = CallbackDelivery.objects.create(
        subscription=subscription,
        inbox_event=event,
        webhook_id="alpha-delivery-1",
        payload={},
        state="failed",
    )
    params = {
        "org_id": org.pk,
        "installation_id": installation.pk,
        "pbx_user_id": a.pbx_user.pk,
        "user_id": a.pbx_user.pk,
        "sms_number_id": a.sms_number.pk,
        "number_id": a.sms_number.pk,
        "spec_id": custom_spec.pk,
        "version_id": submitted.pk,
        "entry_id": entry.pk,
        "fetch_id": fetch.pk,
        "call_pk": call.pk,
        "activity_pk": activity.pk,
        "activity_id": activity.pk,
        "event_pk": event.pk,
        "callback_id": subscription.pk,
        "message_id": message.pk,
        "delivery_id": delivery.pk,
    }
    return World(a, b, params)


@pytest.fixture
def world(tenant_a: Tenant, tenant_b: Tenant) -> World:
    return _build_world(tenant_a, tenant_b)


def _snapshot() -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every tenant and integrations table (m2m tables included)."""
    snapshot: dict[str, list[tuple[Any, ...]]] = {}
    for label in ("tenants", "integrations"):
        for model in apps.get_app_config(label).get_models(include_auto_created=True):
            fields = [f.attname for f in model._meta.concrete_fields]
            rows = model._default_manager.order_by("pk").values_list(*fields)
            snapshot[model._meta.label] = [tuple(repr(v) for v in row) for row in rows]
    return snapshot


def _changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return [label for label in before if before[label] != after[label]]


# Query strings some pages need to render their content (not part of the route itself).
QUERY: dict[str, str] = {
    "messaging-api:lookup": "?phone=%2B14155550100",
    "messaging:conversation_detail": "?with=%2B14155550100",
}
UI_METHODS: tuple[str, ...] = ("GET", "POST")
# The API also takes writes on detail routes: every one of them is tried.
API_METHODS: tuple[str, ...] = ("GET", "POST", "PUT", "PATCH", "DELETE")


def _request(client: Client | APIClient, method: str, url: str, is_api: bool) -> Any:
    if method == "GET":
        return client.get(url)
    if is_api:
        return client.generic(method, url, "{}", content_type="application/json")
    return client.generic(method, url, "", content_type="application/x-www-form-urlencoded")


def _clients(b: Tenant) -> tuple[Client, APIClient]:
    ui = Client()
    ui.force_login(b.reseller)
    api = APIClient()
    api.force_authenticate(b.reseller)
    return ui, api


# --- the tests ------------------------------------------------------------------------------


def test_every_parameter_name_in_the_url_conf_is_known(world: World) -> None:
    """Fails loudly (naming the route) when a route takes a parameter PARAMS cannot fill."""
    for route in all_routes():
        route.url(world.params)


def test_the_walk_finds_the_routes_of_every_area() -> None:
    names = {r.name for r in all_routes()}
    for expected in (
        "organization_detail",
        "api-v1:pbx-user-detail",
        "api-v1:organization-webhook-secret-rotate",
        "integrations:installation_detail",
        "integrations-api:delivery-log-detail",
        "callbacks:edit",
        "callbacks-api:detail",
        "calls-api:call-activity-retry",
        "messaging:conversation_detail",
        "messaging-api:message-detail",
        "events-api:event-replay",
        "callbacks:delivery_retry",
        "callbacks-api:delivery-retry",
        "messaging:message_resend",
        "messaging-api:message-resend",
    ):
        assert expected in names
    assert not any(name.startswith("hooks:") or name == "sms-webhook" for name in names)


def test_another_reseller_gets_404_and_changes_nothing_on_every_route(world: World) -> None:
    ui, api = _clients(world.b)
    failures: list[str] = []
    for route in all_routes():
        url = route.url(world.params)
        client: Client | APIClient = api if route.is_api else ui
        for method in API_METHODS if route.is_api else UI_METHODS:
            before = _snapshot()
            response = _request(client, method, url, route.is_api)
            after = _snapshot()
            status = response.status_code
            changed = _changes(before, after)
            where = f"{method} {url} ({route.name})"
            if changed:
                failures.append(f"{where}: changed {changed} (status {status})")
            if route.params:
                allowed = {404, 405} | ({403} if route.name in FORBIDDEN_OK else set())
                if status not in allowed:
                    failures.append(f"{where}: status {status}, expected one of {allowed}")
            else:
                body = response.content.decode(errors="replace")
                shown = [marker for marker in A_MARKERS if marker in body]
                if shown:
                    failures.append(f"{where}: shows tenant A's {shown}")
                if status >= 500:
                    failures.append(f"{where}: status {status}")
    assert not failures, "\n".join(failures)


# Parameters naming a parent (the scope of the lookup); the other parameters name a child.
PARENT_PARAMS: frozenset[str] = frozenset({"org_id", "installation_id"})


def test_a_child_of_a_is_404_under_bs_own_parent_on_every_nested_route(world: World) -> None:
    """`/orgs/<B's org>/callbacks/<A's callback>/` and the like: the child must be looked up
    within the parent, not by its id alone."""
    b_params = {
        **world.params,
        "org_id": world.b.org.pk,
        "installation_id": InstallationFactory(organization=world.b.org).pk,
    }
    ui, api = _clients(world.b)
    failures: list[str] = []
    nested = [
        r for r in all_routes() if PARENT_PARAMS & set(r.params) and set(r.params) - PARENT_PARAMS
    ]
    assert len(nested) > 20
    for route in nested:
        url = route.url(b_params)
        client: Client | APIClient = api if route.is_api else ui
        for method in API_METHODS if route.is_api else UI_METHODS:
            before = _snapshot()
            response = _request(client, method, url, route.is_api)
            changed = _changes(before, _snapshot())
            where = f"{method} {url} ({route.name})"
            if changed:
                failures.append(f"{where}: changed {changed} (status {response.status_code})")
            if response.status_code not in (404, 405):
                failures.append(f"{where}: status {response.status_code}, expected 404/405")
    assert not failures, "\n".join(failures)


def test_anonymous_is_sent_to_login_or_refused_on_every_route(world: World) -> None:
    ui = Client()
    api = APIClient()
    failures: list[str] = []
    for route in all_routes():
        url = route.url(world.params)
        for method in API_METHODS if route.is_api else UI_METHODS:
            before = _snapshot()
            response = _request(api if route.is_api else ui, method, url, route.is_api)
            changed = _changes(before, _snapshot())
            where = f"{method} {url} ({route.name})"
            if changed:
                failures.append(f"{where}: changed {changed}")
            status = response.status_code
            if route.is_api:
                if status not in (401, 403, 405):
                    failures.append(f"{where}: status {status}, expected 401/403")
            elif status == 405:
                continue
            elif status != 302 or not response["Location"].startswith("/login/"):
                location = response.get("Location", "")
                failures.append(f"{where}: status {status} {location}, expected login redirect")
    assert not failures, "\n".join(failures)


def test_no_route_ever_shows_or_logs_a_secret_to_its_own_reseller(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ui = Client()
    ui.force_login(world.a.reseller)
    api = APIClient()
    api.force_authenticate(world.a.reseller)
    failures: list[str] = []
    seen_ok = 0
    for route in all_routes():
        url = route.url(world.params)
        response = (api if route.is_api else ui).get(url)
        seen_ok += response.status_code == 200
        body = response.content.decode(errors="replace")
        leaked = [secret for secret in SECRETS if secret in body]
        if leaked:
            failures.append(f"GET {url} ({route.name}): shows {leaked}")
    assert not failures, "\n".join(failures)
    # The secrets check means something only if the pages were really rendered.
    assert seen_ok > 50
    assert not [secret for secret in SECRETS if secret in caplog.text]


def test_the_secrets_are_encrypted_at_rest(world: World) -> None:
    columns = [
        (Organization, "webhook_secret"),
        (Installation, "secret_properties"),
        (Installation, "tokens"),
        (CallbackSubscription, "auth_password"),
        (CallbackSubscription, "signing_secret"),
    ]
    with connection.cursor() as cursor:
        for model, field in columns:
            column = connection.ops.quote_name(model._meta.get_field(field).column)
            table = connection.ops.quote_name(model._meta.db_table)
            cursor.execute(f"SELECT {column} FROM {table}")
            stored = " ".join(str(row[0]) for row in cursor.fetchall())
            assert not [s for s in SECRETS if s in stored], (model.__name__, field)
