"""An admin sends a failed callback delivery again (issue 5, item 4): the Retry button of the
callback's page and ``POST …/callbacks/<id>/deliveries/<id>/retry/``. The retried delivery
reaches the receiver with the same ``webhook-id`` (receivers deduplicate) and a valid
signature, its attempts start over, and each attempt is in the delivery log. A delivery that
is not failed, or whose callback is disabled, is refused with a message saying what to do;
a delivery that failed because its callback was disabled goes out once it is enabled again.
Another reseller gets 404 and nothing changes."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone
from oauth2_provider.models import AccessToken
from rest_framework.test import APIClient
from standardwebhooks import Webhook

from integrations.callbacks import callback_delivery_retry, callbacks_dispatch
from integrations.models import CallbackDelivery, CallbackSubscription, DeliveryLogEntry
from tests.integrations.pipeline.conftest import subscribe
from tests.tenants.conftest import Tenant

pytestmark = pytest.mark.django_db


def _failed_delivery(
    tenant: Tenant, recorder: Any, capture: Any
) -> tuple[CallbackSubscription, str, CallbackDelivery]:
    """A cdr callback to the recorder whose first delivery was refused (410: failed at once)."""
    subscription, secret = subscribe(tenant.org, "cdr", f"{recorder.url}/cdr?id={{id}}")
    recorder.fail_next("/cdr", status=410)
    with capture(execute=True):
        [delivery] = callbacks_dispatch(
            organization=tenant.org,
            callback_type="cdr",
            payload={"id": 7, "note": "retry me"},
            tokens={"id": 7},
        )
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.last_status) == ("failed", 1, 410)
    return subscription, secret, delivery


def _retry_url(tenant: Tenant, delivery: CallbackDelivery) -> str:
    return reverse(
        "callbacks:delivery_retry",
        args=[tenant.org.pk, delivery.subscription_id, delivery.pk],
    )


def _api_retry_url(tenant: Tenant, delivery: CallbackDelivery) -> str:
    return reverse(
        "callbacks-api:delivery-retry",
        args=[tenant.org.pk, delivery.subscription_id, delivery.pk],
    )


def _flash(response: Any) -> str:
    return " ".join(str(m) for m in response.context["messages"])


# --- Web UI ----------------------------------------------------------------------------------


def test_an_org_admin_retries_a_failed_delivery_with_the_same_webhook_id(
    client: Any, tenant_a: Tenant, recorder: Any, django_capture_on_commit_callbacks: Any
) -> None:
    subscription, secret, delivery = _failed_delivery(
        tenant_a, recorder, django_capture_on_commit_callbacks
    )
    client.force_login(tenant_a.org_admin)
    detail = reverse("callbacks:detail", args=[tenant_a.org.pk, subscription.pk])
    page = client.get(detail).content.decode()
    assert _retry_url(tenant_a, delivery) in page
    assert 'data-testid="retry"' in page

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(_retry_url(tenant_a, delivery), follow=True)

    assert response.redirect_chain[-1][0].startswith(detail)
    assert f"Delivery {delivery.webhook_id} queued again (same webhook-id)" in _flash(response)
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.last_status) == ("delivered", 1, 200)
    assert delivery.last_error == "" and delivery.delivered_at is not None
    first, second = recorder.requests_to("/cdr")
    assert first.header("webhook-id") == second.header("webhook-id") == delivery.webhook_id
    assert second.query == {"id": ["7"]}
    Webhook(secret).verify(second.body, dict(second.headers))
    logged = list(
        DeliveryLogEntry.objects.filter(organization=tenant_a.org)
        .order_by("pk")
        .values_list("status_code", "ok", "produced_ids")
    )
    assert logged == [
        (410, False, {"webhook_id": delivery.webhook_id}),
        (200, True, {"webhook_id": delivery.webhook_id}),
    ]
    # Delivered: no Retry button any more.
    assert _retry_url(tenant_a, delivery) not in client.get(detail).content.decode()


def test_a_delivery_not_failed_is_refused_with_a_reason(
    client: Any, tenant_a: Tenant, recorder: Any, django_capture_on_commit_callbacks: Any
) -> None:
    subscribe(tenant_a.org, "cdr", f"{recorder.url}/cdr")
    with django_capture_on_commit_callbacks(execute=True):
        [delivery] = callbacks_dispatch(
            organization=tenant_a.org, callback_type="cdr", payload={"id": 1}, tokens={"id": 1}
        )
    delivery.refresh_from_db()
    assert delivery.state == "delivered"
    before = CallbackDelivery.objects.values().get(pk=delivery.pk)
    client.force_login(tenant_a.org_admin)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(_retry_url(tenant_a, delivery), follow=True)

    assert "Only a failed delivery can be retried (it is delivered)." in _flash(response)
    assert CallbackDelivery.objects.values().get(pk=delivery.pk) == before
    assert len(recorder.requests) == 1
    assert client.get(_retry_url(tenant_a, delivery)).status_code == 405


def test_a_disabled_callback_is_refused_then_its_delivery_goes_out_once_enabled(
    client: Any,
    tenant_a: Tenant,
    recorder: Any,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """Failures disable the callback; its pending delivery fails ("the callback is disabled").
    Retrying says to enable it first; once enabled (the edit form), the retry delivers it."""
    settings.CALLBACK_MAX_CONSECUTIVE_FAILURES = 1
    subscription, _ = subscribe(tenant_a.org, "cdr", f"{recorder.url}/cdr")
    recorder.fail_next("/cdr", status=500)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        first, second = (
            callbacks_dispatch(
                organization=tenant_a.org, callback_type="cdr", payload={"id": n}, tokens={"id": n}
            )[0]
            for n in (1, 2)
        )
    for callback in queued:
        callback()
    subscription.refresh_from_db()
    assert subscription.active is False
    second.refresh_from_db()
    assert (second.state, second.last_error) == ("failed", "Not sent: the callback is disabled.")
    client.force_login(tenant_a.org_admin)

    with django_capture_on_commit_callbacks(execute=True):
        refused = client.post(_retry_url(tenant_a, second), follow=True)

    assert "is disabled" in _flash(refused) and "enable it again" in _flash(refused)
    second.refresh_from_db()
    assert second.state == "failed"
    assert len(recorder.requests) == 1

    client.post(
        reverse("callbacks:edit", args=[tenant_a.org.pk, subscription.pk]),
        {
            "name": subscription.name,
            "callback_type": "cdr",
            "url": subscription.url,
            "active": "on",
        },
    )
    subscription.refresh_from_db()
    assert subscription.active is True
    with django_capture_on_commit_callbacks(execute=True):
        for delivery in (first, second):
            response = client.post(_retry_url(tenant_a, delivery), follow=True)
            assert "queued again" in _flash(response)

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.state, second.state) == ("delivered", "delivered")
    ids = [r.header("webhook-id") for r in recorder.requests_to("/cdr")]
    assert ids == [first.webhook_id, first.webhook_id, second.webhook_id]


def test_a_retry_starts_a_fresh_run_of_attempts(
    tenant_a: Tenant, recorder: Any, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """A delivery that gave up after CALLBACK_MAX_ATTEMPTS gets the full count again."""
    settings.CALLBACK_MAX_ATTEMPTS = 2
    _, _, delivery = _failed_delivery(tenant_a, recorder, django_capture_on_commit_callbacks)
    CallbackDelivery.objects.filter(pk=delivery.pk).update(attempts=2)
    recorder.fail_next("/cdr", status=503)

    with django_capture_on_commit_callbacks(execute=True):
        delivery = callback_delivery_retry(delivery=delivery)

    delivery.refresh_from_db()
    # One attempt of two made: still pending, its next attempt scheduled (not given up).
    assert (delivery.state, delivery.attempts, delivery.last_status) == ("pending", 1, 503)
    assert delivery.next_attempt_at is not None


def test_the_retry_is_due_at_once_for_the_sweeper_when_the_broker_is_down(
    tenant_a: Tenant, recorder: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from integrations.callbacks import callback_sweep

    _, _, delivery = _failed_delivery(tenant_a, recorder, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=False):
        delivery = callback_delivery_retry(delivery=delivery)

    assert delivery.state == "pending" and delivery.next_attempt_at <= timezone.now()
    assert callback_sweep() == [delivery.pk]


# --- REST API --------------------------------------------------------------------------------


def _bearer(tenant: Tenant, scope: str) -> APIClient:
    token = AccessToken.objects.create(
        user=tenant.org_admin,
        token=f"callback-retry-{uuid.uuid4().hex}",
        scope=scope,
        expires=timezone.now() + timedelta(hours=1),
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token.token}")
    return client


def test_api_retry_with_an_oauth_token_of_write_scope(
    tenant_a: Tenant, recorder: Any, django_capture_on_commit_callbacks: Any
) -> None:
    _, _, delivery = _failed_delivery(tenant_a, recorder, django_capture_on_commit_callbacks)
    url = _api_retry_url(tenant_a, delivery)

    read_only = _bearer(tenant_a, "read").post(url)
    assert read_only.status_code == 403
    assert "write" in read_only.json()["message"]
    assert CallbackDelivery.objects.get(pk=delivery.pk).state == "failed"

    with django_capture_on_commit_callbacks(execute=True):
        response = _bearer(tenant_a, "read write").post(url)

    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["id"], body["webhook_id"]) == (delivery.pk, delivery.webhook_id)
    assert body["state"] in ("pending", "delivered")
    delivery.refresh_from_db()
    assert delivery.state == "delivered"
    assert [r.header("webhook-id") for r in recorder.requests_to("/cdr")] == [
        delivery.webhook_id
    ] * 2


def test_api_refusals_are_400_naming_the_problem(
    tenant_a: Tenant, recorder: Any, django_capture_on_commit_callbacks: Any
) -> None:
    subscription, _, delivery = _failed_delivery(
        tenant_a, recorder, django_capture_on_commit_callbacks
    )
    api = APIClient()
    api.force_login(tenant_a.org_admin)
    CallbackSubscription.objects.filter(pk=subscription.pk).update(active=False)

    disabled = api.post(_api_retry_url(tenant_a, delivery))

    assert disabled.status_code == 400
    assert "enable it again" in str(disabled.json())
    CallbackSubscription.objects.filter(pk=subscription.pk).update(active=True)
    with django_capture_on_commit_callbacks(execute=True):
        assert api.post(_api_retry_url(tenant_a, delivery)).status_code == 202
    again = api.post(_api_retry_url(tenant_a, delivery))
    assert again.status_code == 400
    assert "Only a failed delivery can be retried (it is delivered)." in str(again.json())
    assert len(recorder.requests_to("/cdr")) == 2


def test_another_reseller_gets_404_and_nothing_is_sent(
    client: Any,
    tenant_a: Tenant,
    tenant_b: Tenant,
    recorder: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    _, _, delivery = _failed_delivery(tenant_a, recorder, django_capture_on_commit_callbacks)
    before = list(CallbackDelivery.objects.values())
    client.force_login(tenant_b.reseller)
    api = APIClient()
    api.force_login(tenant_b.reseller)
    b_org_url = reverse(
        "callbacks-api:delivery-retry",
        args=[tenant_b.org.pk, delivery.subscription_id, delivery.pk],
    )

    with django_capture_on_commit_callbacks(execute=True):
        responses = [
            client.post(_retry_url(tenant_a, delivery)).status_code,
            api.post(_api_retry_url(tenant_a, delivery)).status_code,
            api.post(b_org_url).status_code,
        ]

    assert responses == [404, 404, 404]
    assert list(CallbackDelivery.objects.values()) == before
    assert len(recorder.requests_to("/cdr")) == 1
