"""Outbound callbacks: token replacement (URL-encoded values, headers refused with line breaks,
Basic auth never replaced), Standard Webhooks signatures with a webhook-id stable across
retries, backoff honouring Retry-After, the delivery log, bindings, and a subscription
disabled after a run of failures with a notice on the organization's callbacks page."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone
from standardwebhooks import Webhook

from integrations.callbacks import (
    callback_deliver,
    callback_retry_delay,
    callback_subscription_update,
    callback_sweep,
    callback_tokens_render,
    callbacks_dispatch,
)
from integrations.models import (
    CallbackDelivery,
    CallbackSubscription,
    DeliveryLogEntry,
    Notice,
)
from tests.factories import OrgAdminMembershipFactory
from tests.integrations.pipeline.conftest import subscribe

pytestmark = pytest.mark.django_db

TRICKY = {
    "caller": "+1 (415) 555-0100",
    "name": "Zoë & Søn {VIP} 東京",
    "brace": "{caller}",
    "amp": "a=1&b=2",
    "pages ": "ignored",
    "pages": 3,
    "flag": True,
}


def _dispatch(org: Any, callback_type: str, payload: dict, tokens: dict, capture: Any) -> Any:
    with capture(execute=True):
        deliveries = callbacks_dispatch(
            organization=org, callback_type=callback_type, payload=payload, tokens=tokens
        )
    return deliveries


def _again(delivery: CallbackDelivery) -> CallbackDelivery:
    """Make the next attempt due now and run it (without a broker, nothing schedules it)."""
    CallbackDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    result = callback_deliver(delivery_id=delivery.pk)
    assert result is not None
    return result


def test_token_values_are_percent_encoded_in_urls_and_never_expanded_twice() -> None:
    template = (
        "https://x.example/cb/{name}?caller={caller}&b={brace}&amp={amp}&p={pages }"
        "&u={nope}&f={flag}"
    )

    rendered = callback_tokens_render(template, TRICKY, url=True)

    assert rendered == (
        "https://x.example/cb/Zo%C3%AB%20%26%20S%C3%B8n%20%7BVIP%7D%20%E6%9D%B1%E4%BA%AC"
        "?caller=%2B1%20%28415%29%20555-0100&b=%7Bcaller%7D&amp=a%3D1%26b%3D2&p=3"
        "&u={nope}&f=true"
    )
    # Headers get the raw text.
    assert callback_tokens_render("X:{brace}/{name}", TRICKY) == "X:{caller}/Zoë & Søn {VIP} 東京"


def test_tricky_token_values_reach_the_receiver_intact(
    org: Any, recorder: Any, django_capture_on_commit_callbacks: Any
) -> None:
    subscribe(
        org,
        "sms",
        f"{recorder.url}/in/{{name}}?caller={{caller}}&amp={{amp}}&b={{brace}}",
        headers="X-Name:{name}\nX-Brace:{brace}",
    )

    _dispatch(org, "sms", {"message": "hi"}, TRICKY, django_capture_on_commit_callbacks)

    [request] = recorder.requests
    assert request.path == "/in/Zoë & Søn {VIP} 東京"
    assert request.query == {
        "caller": ["+1 (415) 555-0100"],
        "amp": ["a=1&b=2"],
        "b": ["{caller}"],
    }
    assert request.header("X-Brace") == "{caller}"
    # HTTP header values travel as Latin-1; the UTF-8 bytes arrive unchanged.
    assert request.header("X-Name").encode("latin-1").decode("utf-8") == TRICKY["name"]


def test_a_header_value_with_a_line_break_is_refused_and_nothing_is_sent(
    org: Any, recorder: Any, django_capture_on_commit_callbacks: Any
) -> None:
    subscription, _ = subscribe(org, "sms", f"{recorder.url}/sms", headers="X-Text:{message}")

    [delivery] = _dispatch(
        org,
        "sms",
        {"message": "x"},
        {"message": "hello\r\nX-Injected: yes"},
        django_capture_on_commit_callbacks,
    )

    delivery.refresh_from_db()
    assert delivery.state == "failed"
    assert "X-Text" in delivery.last_error and "line break" in delivery.last_error
    assert recorder.requests == []
    subscription.refresh_from_db()
    assert subscription.consecutive_failures == 0
    assert DeliveryLogEntry.objects.get().error == delivery.last_error


def test_basic_auth_is_sent_as_written_and_never_logged(
    org: Any, recorder: Any, django_capture_on_commit_callbacks: Any
) -> None:
    subscribe(
        org, "cdr", f"{recorder.url}/cdr", auth_username="{id}", auth_password="p@ss {id} wörd"
    )

    _dispatch(org, "cdr", {"id": 7}, {"id": 7}, django_capture_on_commit_callbacks)

    [request] = recorder.requests
    expected = base64.b64encode("{id}:p@ss {id} wörd".encode("latin-1")).decode()
    assert request.header("Authorization") == f"Basic {expected}"
    log = DeliveryLogEntry.objects.get()
    assert "p@ss" not in log.url + log.request_body + log.response_body


def test_signatures_verify_with_the_library_and_the_webhook_id_is_stable_across_retries(
    org: Any, recorder: Any, django_capture_on_commit_callbacks: Any
) -> None:
    subscription, secret = subscribe(org, "cdr", f"{recorder.url}/cdr")
    assert secret.startswith("whsec_")
    recorder.fail_next("/cdr", status=503, times=2)

    [delivery] = _dispatch(
        org, "cdr", {"id": 1, "note": "é"}, {"id": 1}, django_capture_on_commit_callbacks
    )
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.last_status) == ("pending", 1, 503)
    assert delivery.next_attempt_at is not None
    _again(delivery)
    delivery = _again(delivery)

    assert (delivery.state, delivery.attempts, delivery.last_status) == ("delivered", 3, 200)
    requests = recorder.requests_to("/cdr")
    assert len(requests) == 3
    assert {r.header("webhook-id") for r in requests} == {delivery.webhook_id}
    for request in requests:
        Webhook(secret).verify(request.body, dict(request.headers))
    logged = list(
        DeliveryLogEntry.objects.order_by("pk").values_list("attempt", "status_code", "ok")
    )
    assert logged == [(1, 503, False), (2, 503, False), (3, 200, True)]
    assert (
        DeliveryLogEntry.objects.filter(
            installation=None, method_name="callback:cdr", organization=org
        ).count()
        == 3
    )
    subscription.refresh_from_db()
    assert subscription.consecutive_failures == 0


def test_an_unsigned_subscription_sends_no_signature(
    org: Any, recorder: Any, django_capture_on_commit_callbacks: Any
) -> None:
    subscribe(org, "cdr", f"{recorder.url}/cdr", signing_secret="")

    _dispatch(org, "cdr", {"id": 1}, {"id": 1}, django_capture_on_commit_callbacks)

    [request] = recorder.requests
    assert request.header("webhook-id", "").startswith("msg_")
    assert request.header("webhook-signature") is None


def test_retry_after_is_honoured(
    org: Any, recorder: Any, django_capture_on_commit_callbacks: Any
) -> None:
    subscribe(org, "cdr", f"{recorder.url}/cdr")
    recorder.rate_limit_next("/cdr", retry_after=120)
    before = timezone.now()

    [delivery] = _dispatch(org, "cdr", {"id": 1}, {"id": 1}, django_capture_on_commit_callbacks)

    delivery.refresh_from_db()
    assert (delivery.state, delivery.last_status) == ("pending", 429)
    assert delivery.next_attempt_at >= before + timedelta(seconds=120)
    # Not due: a duplicate task message does nothing.
    assert callback_deliver(delivery_id=delivery.pk).attempts == 1


def test_backoff_grows_exponentially_with_jitter(settings: Any) -> None:
    settings.CALLBACK_RETRY_BASE_SECONDS = 10
    settings.CALLBACK_RETRY_MAX_SECONDS = 100
    delays = [callback_retry_delay(n) for n in (1, 2, 3, 4, 5, 6)]

    assert 5 <= delays[0] <= 10
    assert 10 <= delays[1] <= 20
    assert 20 <= delays[2] <= 40
    assert all(50 <= d <= 100 for d in delays[4:])
    assert callback_retry_delay(1, retry_after=300) == 300


def test_a_4xx_fails_at_once_and_attempts_are_capped(
    org: Any, recorder: Any, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.CALLBACK_MAX_ATTEMPTS = 2
    subscribe(org, "cdr", f"{recorder.url}/gone")
    subscribe(org, "cdr", f"{recorder.url}/down")
    recorder.fail_next("/gone", status=410, times=None)
    recorder.fail_next("/down", status=500, times=None)

    gone, down = _dispatch(org, "cdr", {"id": 1}, {"id": 1}, django_capture_on_commit_callbacks)
    gone.refresh_from_db()
    down = _again(down)

    assert (gone.state, gone.attempts) == ("failed", 1)
    assert "410" in gone.last_error
    assert (down.state, down.attempts) == ("failed", 2)
    assert down.last_error.startswith("Gave up after 2 attempts: 500 from")


def test_a_subscription_is_disabled_after_n_failures_with_a_notice(
    client: Any, org: Any, recorder: Any, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.CALLBACK_MAX_CONSECUTIVE_FAILURES = 3
    subscription, _ = subscribe(org, "cdr", f"{recorder.url}/cdr")
    recorder.fail_next("/cdr", status=500, times=None)

    [first] = _dispatch(org, "cdr", {"id": 1}, {"id": 1}, django_capture_on_commit_callbacks)
    [second] = _dispatch(org, "cdr", {"id": 2}, {"id": 2}, django_capture_on_commit_callbacks)
    subscription.refresh_from_db()
    assert (subscription.active, subscription.consecutive_failures) == (True, 2)
    _again(first)

    subscription.refresh_from_db()
    assert subscription.active is False
    assert subscription.disabled_reason.startswith("Disabled after 3 failed deliveries in a row")
    assert "500 from" in subscription.disabled_reason
    first.refresh_from_db()
    assert first.state == "failed"
    # A delivery still pending for it is not sent any more.
    assert _again(second).state == "failed"
    assert len(recorder.requests) == 3
    # Further events are not queued for it.
    assert _dispatch(org, "cdr", {"id": 3}, {"id": 3}, django_capture_on_commit_callbacks) == []
    notice = Notice.objects.get(organization=org)
    assert notice.level == "error" and notice.resolved_at is None
    assert notice.action_url == reverse("callbacks:detail", args=[org.pk, subscription.pk])

    admin = OrgAdminMembershipFactory(organization=org).user
    client.force_login(admin)
    page = client.get(reverse("callbacks:list", args=[org.pk])).content.decode()
    assert "Disabled after 3 failed deliveries in a row" in page
    assert 'data-testid="callback-notice"' in page

    callback_subscription_update(subscription=subscription, active=True)
    subscription.refresh_from_db()
    assert (subscription.active, subscription.consecutive_failures) == (True, 0)
    assert subscription.disabled_reason == ""
    assert Notice.objects.get().resolved_at is not None
    assert (
        'data-testid="callback-notice"'
        not in client.get(reverse("callbacks:list", args=[org.pk])).content.decode()
    )


def test_bindings_select_the_subscriptions_of_a_number(
    org: Any, recorder: Any, django_capture_on_commit_callbacks: Any
) -> None:
    subscribe(org, "sms", f"{recorder.url}/bound", bindings=["+1 818 555 9876"])
    subscribe(org, "sms", f"{recorder.url}/other", bindings=["+18185550000"])
    subscribe(org, "sms", f"{recorder.url}/all")

    deliveries = _dispatch(
        org, "sms", {"to": "8185559876"}, {"to": "8185559876"}, django_capture_on_commit_callbacks
    )

    assert len(deliveries) == 2
    assert sorted(r.path for r in recorder.requests) == ["/all", "/bound"]


def test_fanning_out_one_event_twice_creates_one_delivery(
    org: Any, recorder: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from integrations.inbox import inbox_event_store

    subscribe(org, "cdr", f"{recorder.url}/cdr")
    event, _ = inbox_event_store(
        source="pbx", event_type="cdr", dedup_key="cdr:9", organization=org, payload={"id": 9}
    )
    with django_capture_on_commit_callbacks(execute=True):
        first = callbacks_dispatch(
            organization=org, callback_type="cdr", payload={"id": 9}, tokens={}, source_event=event
        )
        again = callbacks_dispatch(
            organization=org, callback_type="cdr", payload={"id": 9}, tokens={}, source_event=event
        )

    assert [d.pk for d in first] == [d.pk for d in again]
    assert CallbackDelivery.objects.count() == 1
    assert len(recorder.requests) == 1


def test_the_sweeper_sends_due_and_forgotten_deliveries(org: Any, recorder: Any) -> None:
    subscription, _ = subscribe(org, "cdr", f"{recorder.url}/cdr")
    forgotten = CallbackDelivery.objects.create(
        subscription=subscription, webhook_id="msg_forgotten", payload={"id": 1}, tokens={}
    )
    CallbackDelivery.objects.filter(pk=forgotten.pk).update(
        created_at=timezone.now() - timedelta(minutes=10)
    )
    due = CallbackDelivery.objects.create(
        subscription=subscription,
        webhook_id="msg_due",
        payload={"id": 2},
        tokens={},
        attempts=1,
        next_attempt_at=timezone.now() - timedelta(seconds=1),
    )
    CallbackDelivery.objects.create(
        subscription=subscription, webhook_id="msg_fresh", payload={"id": 3}, tokens={}
    )

    swept = callback_sweep(stuck_after_seconds=300)

    assert sorted(swept) == sorted([forgotten.pk, due.pk])
    assert sorted(r.header("webhook-id") for r in recorder.requests) == ["msg_due", "msg_forgotten"]


def test_unknown_types_and_missing_bodies_are_programming_errors(org: Any) -> None:
    with pytest.raises(ValueError, match="unknown callback type"):
        callbacks_dispatch(organization=org, callback_type="nope", payload={}, tokens={})
    with pytest.raises(ValueError, match="needs a payload"):
        callbacks_dispatch(organization=org, callback_type="voicemail", payload=None, tokens={})


def test_subscriptions_are_validated_naming_the_field(org: Any) -> None:
    from django.core.exceptions import ValidationError

    cases = [
        ({"url": "ftp://x/y"}, "url"),
        ({"url": "https://{host}/x"}, "url"),
        ({"headers": "no colon here"}, "headers"),
        ({"headers": "Bad Name:x"}, "headers"),
        ({"headers": "webhook-id:x"}, "headers"),
        ({"callback_type": "cdr", "bindings": ["+14155550100"]}, "bindings"),
        ({"auth_password": "x"}, "auth_username"),
        ({"callback_type": "nope"}, "callback_type"),
    ]
    for change, field in cases:
        kwargs = {"callback_type": "sms", "url": "https://example.com/x", **change}
        with pytest.raises(ValidationError) as excinfo:
            subscribe(org, **kwargs)
        assert field in excinfo.value.message_dict, (change, excinfo.value.message_dict)
    assert not CallbackSubscription.objects.exists()


def test_a_test_send_uses_ringrx_format_and_fills_its_tokens(
    org: Any, recorder: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from integrations.callbacks import callback_subscription_test

    subscription, _ = subscribe(
        org, "call_alert", f"{recorder.url}/alert?caller={{caller_name}}&uuid={{uuid}}"
    )

    with django_capture_on_commit_callbacks(execute=True):
        callback_subscription_test(subscription=subscription)

    [received] = recorder.requests_to("/alert")
    body = json.loads(received.body)
    # The seed's sample body, typo included; its {caller_name} token is filled all the same.
    assert body["caller_nname"] == "Dr Smith"
    assert received.query == {"caller": ["Dr Smith"], "uuid": [body["uuid"]]}
