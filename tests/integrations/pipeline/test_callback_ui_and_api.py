"""Managing callbacks from the portal and the REST API: create, read, change, delete, test;
secrets write-only; and tenant isolation on every route and method (another reseller, or an
org admin of a sibling organization, gets 404 and changes nothing)."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import URLPattern, reverse
from rest_framework.test import APIClient

from integrations import callback_api_urls, callback_urls
from integrations.models import CallbackDelivery, CallbackSubscription
from tests.integrations.pipeline.conftest import subscribe
from tests.tenants.conftest import Tenant

pytestmark = pytest.mark.django_db

VALID_FORM = {
    "name": "CDR to our warehouse",
    "callback_type": "cdr",
    "url": "https://example.com/cdr?id={id}",
    "auth_username": "patchbay",
    "auth_password": "s3cret-pass",
    "headers": "X-Token:{aleg_uuid}",
    "bindings": "",
    "active": "on",
}


def _callback(tenant: Tenant, recorder_url: str = "https://example.com") -> CallbackSubscription:
    subscription, _ = subscribe(
        tenant.org, "cdr", f"{recorder_url}/cdr?id={{id}}", auth_username="u", auth_password="pw"
    )
    return subscription


def _failed_delivery(subscription: CallbackSubscription) -> CallbackDelivery:
    return CallbackDelivery.objects.create(
        subscription=subscription,
        webhook_id="msg_isolation-1",
        payload={"id": "1"},
        state=CallbackDelivery.State.FAILED,
        attempts=3,
        last_error="HTTP 500",
    )


# --- Web UI ----------------------------------------------------------------------------------


def test_an_org_admin_creates_edits_tests_and_deletes_a_callback(
    client: Any,
    tenant_a: Tenant,
    recorder: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    client.force_login(tenant_a.org_admin)
    org = tenant_a.org
    assert client.get(reverse("callbacks:create", args=[org.pk])).status_code == 200

    response = client.post(
        reverse("callbacks:create", args=[org.pk]),
        {**VALID_FORM, "url": f"{recorder.url}/cdr?id={{id}}"},
        follow=True,
    )

    subscription = CallbackSubscription.objects.get()
    assert response.redirect_chain[-1][0] == reverse(
        "callbacks:detail", args=[org.pk, subscription.pk]
    )
    page = response.content.decode()
    assert subscription.signing_secret in page  # shown once, in the flash message
    assert "s3cret-pass" not in page
    detail = client.get(reverse("callbacks:detail", args=[org.pk, subscription.pk]))
    assert subscription.signing_secret not in detail.content.decode()

    # Editing with a blank password keeps it; the secret can be rotated.
    old_secret = subscription.signing_secret
    client.post(
        reverse("callbacks:edit", args=[org.pk, subscription.pk]),
        {
            **VALID_FORM,
            "url": f"{recorder.url}/cdr?id={{id}}",
            "auth_password": "",
            "name": "Renamed",
            "rotate_signing_secret": "on",
            "active": "on",
        },
    )
    subscription.refresh_from_db()
    assert (subscription.name, subscription.auth_password) == ("Renamed", "s3cret-pass")
    assert subscription.signing_secret != old_secret

    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("callbacks:test", args=[org.pk, subscription.pk]))
    delivery = CallbackDelivery.objects.get()
    assert delivery.state == "delivered"
    [request] = recorder.requests
    assert request.query == {"id": ["5512345"]}

    listing = client.get(reverse("callbacks:list", args=[org.pk])).content.decode()
    assert "Renamed" in listing
    client.post(reverse("callbacks:delete", args=[org.pk, subscription.pk]))
    assert not CallbackSubscription.objects.exists()


def test_the_form_shows_service_errors_on_their_field(client: Any, tenant_a: Tenant) -> None:
    client.force_login(tenant_a.reseller)

    response = client.post(
        reverse("callbacks:create", args=[tenant_a.org.pk]),
        {**VALID_FORM, "headers": "no colon"},
    )

    assert response.status_code == 200
    assert "expected Name:value" in response.content.decode()
    assert not CallbackSubscription.objects.exists()


def test_the_org_page_links_to_its_callbacks(client: Any, tenant_a: Tenant) -> None:
    client.force_login(tenant_a.org_admin)

    page = client.get(
        reverse("organization_detail", args=[tenant_a.org.pk]) + "?tab=webhooks"
    ).content.decode()

    assert reverse("callbacks:list", args=[tenant_a.org.pk]) in page


UI_ROUTES = [(p.name, frozenset(p.pattern.converters)) for p in callback_urls.urlpatterns]


def test_the_isolation_table_covers_every_ui_route() -> None:
    assert all(isinstance(p, URLPattern) for p in callback_urls.urlpatterns)
    assert {kwargs for _, kwargs in UI_ROUTES} <= {
        frozenset({"org_id"}),
        frozenset({"org_id", "callback_id"}),
        frozenset({"org_id", "callback_id", "delivery_id"}),
    }


@pytest.mark.parametrize(("name", "kwargs"), UI_ROUTES)
@pytest.mark.parametrize("who", ["other_reseller", "sibling_org_admin"])
def test_every_ui_route_is_404_for_another_tenant(
    client: Any, tenant_a: Tenant, tenant_b: Tenant, name: str, kwargs: frozenset, who: str
) -> None:
    from tests.factories import OrgAdminMembershipFactory

    subscription = _callback(tenant_a)
    delivery = _failed_delivery(subscription)
    before = list(CallbackSubscription.objects.values())
    deliveries_before = list(CallbackDelivery.objects.values())
    if who == "other_reseller":
        client.force_login(tenant_b.reseller)
    else:
        client.force_login(OrgAdminMembershipFactory(organization=tenant_a.sibling_org).user)
    values = {"org_id": tenant_a.org.pk, "callback_id": subscription.pk, "delivery_id": delivery.pk}
    url = reverse(f"callbacks:{name}", kwargs={k: values[k] for k in kwargs})

    assert client.get(url).status_code in ({404, 405} if name == "delivery_retry" else {404})
    assert client.post(url, VALID_FORM).status_code == 404
    assert list(CallbackSubscription.objects.values()) == before
    assert list(CallbackDelivery.objects.values()) == deliveries_before


def test_a_callback_is_not_reachable_through_another_org_of_the_same_reseller(
    client: Any, tenant_a: Tenant
) -> None:
    subscription = _callback(tenant_a)
    client.force_login(tenant_a.reseller)

    url = reverse("callbacks:detail", args=[tenant_a.sibling_org.pk, subscription.pk])

    assert client.get(url).status_code == 404


def test_anonymous_users_are_sent_to_login(client: Any, tenant_a: Tenant) -> None:
    response = client.get(reverse("callbacks:list", args=[tenant_a.org.pk]))

    assert response.status_code == 302
    assert "/login/" in response["Location"]


# --- REST API --------------------------------------------------------------------------------


@pytest.fixture
def api(tenant_a: Tenant) -> APIClient:
    client = APIClient()
    client.force_login(tenant_a.org_admin)
    return client


def test_api_crud_with_write_only_secrets(api: APIClient, tenant_a: Tenant) -> None:
    base = reverse("callbacks-api:list", args=[tenant_a.org.pk])
    created = api.post(
        base,
        {
            "name": "Voicemail",
            "callback_type": "voicemail",
            "url": "https://example.com/vm?from={caller}",
            "auth_username": "me",
            "auth_password": "pw",
            "bindings": ["1001"],
        },
        format="json",
    )

    assert created.status_code == 201, created.content
    body = created.json()
    assert body["signing_secret"].startswith("whsec_")
    assert body["has_auth_password"] is True and body["signed"] is True
    assert "auth_password" not in body
    detail = reverse("callbacks-api:detail", args=[tenant_a.org.pk, body["id"]])
    fetched = api.get(detail).json()
    assert "signing_secret" not in fetched and "auth_password" not in fetched
    assert fetched["bindings"] == ["1001"]
    assert api.get(base).json()["count"] == 1

    patched = api.patch(detail, {"active": False, "auth_password": ""}, format="json")
    assert patched.status_code == 200
    assert (patched.json()["active"], patched.json()["has_auth_password"]) == (False, False)

    replaced = api.put(
        detail,
        {"name": "VM2", "callback_type": "voicemail", "url": "https://example.com/v2"},
        format="json",
    )
    assert replaced.status_code == 200
    assert replaced.json()["signed"] is True  # omitted secrets are kept
    subscription = CallbackSubscription.objects.get()
    assert subscription.signing_secret == body["signing_secret"]

    assert api.delete(detail).status_code == 204
    assert not CallbackSubscription.objects.exists()


def test_api_a_client_chosen_secret_is_not_echoed(api: APIClient, tenant_a: Tenant) -> None:
    response = api.post(
        reverse("callbacks-api:list", args=[tenant_a.org.pk]),
        {"name": "x", "callback_type": "cdr", "url": "https://e.com/x", "signing_secret": "mine"},
        format="json",
    )

    assert response.status_code == 201
    assert response.json()["signing_secret"] == ""
    assert CallbackSubscription.objects.get().signing_secret == "mine"


def test_api_errors_name_the_field(api: APIClient, tenant_a: Tenant) -> None:
    response = api.post(
        reverse("callbacks-api:list", args=[tenant_a.org.pk]),
        {"name": "x", "callback_type": "sms", "url": "https://e.com/x", "headers": "Host:evil"},
        format="json",
    )

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["headers"]


def test_api_test_send_and_deliveries(
    api: APIClient, tenant_a: Tenant, recorder: Any, django_capture_on_commit_callbacks: Any
) -> None:
    subscription = _callback(tenant_a, recorder.url)

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(reverse("callbacks-api:test", args=[tenant_a.org.pk, subscription.pk]))

    assert response.status_code == 202
    deliveries = api.get(
        reverse("callbacks-api:deliveries", args=[tenant_a.org.pk, subscription.pk])
    ).json()
    assert deliveries["count"] == 1
    assert deliveries["results"][0]["state"] == "delivered"
    assert len(recorder.requests) == 1


API_METHODS = {
    "list": ("GET", "POST"),
    "detail": ("GET", "PUT", "PATCH", "DELETE"),
    "test": ("POST",),
    "deliveries": ("GET",),
    "delivery-retry": ("POST",),
}


def test_the_isolation_table_covers_every_api_route() -> None:
    assert {p.name for p in callback_api_urls.urlpatterns} == set(API_METHODS)


@pytest.mark.parametrize(
    ("name", "method"), [(n, m) for n, methods in API_METHODS.items() for m in methods]
)
def test_every_api_route_and_method_is_404_for_another_reseller(
    tenant_a: Tenant, tenant_b: Tenant, name: str, method: str
) -> None:
    subscription = _callback(tenant_a)
    delivery = _failed_delivery(subscription)
    before = list(CallbackSubscription.objects.values())
    deliveries_before = list(CallbackDelivery.objects.values())
    client = APIClient()
    client.force_login(tenant_b.reseller)
    pattern = next(p for p in callback_api_urls.urlpatterns if p.name == name)
    values = {"org_id": tenant_a.org.pk, "callback_id": subscription.pk, "delivery_id": delivery.pk}
    url = reverse(
        f"callbacks-api:{name}", kwargs={k: values[k] for k in pattern.pattern.converters}
    )
    payload = {"name": "hijack", "callback_type": "cdr", "url": "https://evil.example/x"}

    response = getattr(client, method.lower())(url, payload, format="json")

    assert response.status_code == 404, (name, method, response.content)
    assert list(CallbackSubscription.objects.values()) == before
    assert list(CallbackDelivery.objects.values()) == deliveries_before


def test_the_api_needs_authentication(tenant_a: Tenant) -> None:
    response = APIClient().get(reverse("callbacks-api:list", args=[tenant_a.org.pk]))

    assert response.status_code == 401
