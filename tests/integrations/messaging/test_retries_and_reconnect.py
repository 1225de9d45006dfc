"""Sending retries honour the provider's Retry-After and an attempt limit (the row keeps the
count, the sweeper never retries early); refused credentials mark the SMS or CRM integration
*needs reconnect* with a notice, as in call logging; CRM logs and status callbacks left
behind by a lost message or a crash are done later, once."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from integrations import messaging
from integrations.models import Installation, Message, Notice
from integrations.sandbox.pytest_fixtures import ringrx_server
from integrations.sandbox.ringrx import DEFAULT_API_SECRET, DEFAULT_API_TOKEN
from tests.factories import InstallationFactory
from tests.integrations.messaging.support import (
    bound_number,
    crm_installation,
    sms_installation,
    subscribe,
)
from tests.integrations.portal.portal_support import builtin_version

__all__ = ["ringrx_server"]

pytestmark = pytest.mark.django_db

NUMBER = "+14155550123"


@pytest.fixture
def sms_setup(tenant_a: Any, sms_server: Any) -> dict[str, Any]:
    installation = sms_installation(tenant_a.org, sms_server)
    sms_number = bound_number(tenant_a.org, installation, NUMBER, users=[tenant_a.pbx_user])
    return {"org": tenant_a.org, "installation": installation, "number": sms_number}


def _queued(setup: dict[str, Any], captured: Any, content: str = "Hello") -> Message:
    """A queued message whose task is not run (the test makes the attempts)."""
    with captured(execute=False):
        return messaging.message_send(
            organization=setup["org"],
            sms_number=setup["number"],
            sender=None,
            to="+14155550100",
            content=content,
        )


def _make_due(message: Message) -> None:
    """Time passes: the message's next attempt is due."""
    Message.objects.filter(pk=message.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )


def _sweep(**options: Any) -> str:
    out = io.StringIO()
    call_command("sweep", stdout=out, **options)
    return out.getvalue()


# --- Item: Retry-After and the attempt limit -------------------------------------------------


def test_a_429_with_a_long_retry_after_is_not_retried_before_it(
    sms_setup: dict[str, Any], sms_server: Any, django_capture_on_commit_callbacks: Any
) -> None:
    message = _queued(sms_setup, django_capture_on_commit_callbacks)
    sms_server.rate_limit_next("/webhook", retry_after=900)

    outcome = messaging.message_deliver(message_id=message.pk)
    assert outcome is not None and outcome.retry

    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED and message.attempts == 1
    assert message.next_attempt_at >= timezone.now() + timedelta(seconds=890)
    assert "429" in message.error and "retrying in 900 s" in message.error
    # Sweeps before the provider's time (even with no grace) send nothing.
    assert messaging.message_sweep(stuck_after_seconds=0) == []
    assert "0 message(s)" in _sweep(stuck_after=0)
    assert len(sms_server.requests_to("/webhook")) == 1

    _make_due(message)
    assert "1 message(s)" in _sweep()
    message.refresh_from_db()
    assert message.status == Message.Status.SENT, message.error
    assert message.attempts == 2 and message.next_attempt_at is None
    assert len(sms_server.sent_messages) == 1


def test_a_provider_always_answering_429_fails_the_message_after_the_attempt_limit(
    sms_setup: dict[str, Any],
    sms_server: Any,
    django_capture_on_commit_callbacks: Any,
    settings: Any,
) -> None:
    settings.MESSAGE_SEND_MAX_ATTEMPTS = 3
    message = _queued(sms_setup, django_capture_on_commit_callbacks)
    sms_server.rate_limit_next("/webhook", retry_after=900, times=None)

    for _ in range(5):  # each attempt made once it is due
        messaging.message_deliver(message_id=message.pk)
        _make_due(message)

    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert message.attempts == 3
    assert message.error.startswith("Not sent after 3 attempt(s): ")
    assert "429" in message.error and "send the message again" in message.error
    assert len(sms_server.requests_to("/webhook")) == 3
    assert messaging.message_sweep(stuck_after_seconds=0) == []


# --- Item: refused credentials mark the integration needs reconnect ---------------------------


def test_a_refused_ringrx_refresh_marks_the_sms_integration_needs_reconnect(
    tenant_a: Any, ringrx_server: Any, django_capture_on_commit_callbacks: Any
) -> None:
    installation = InstallationFactory(
        organization=tenant_a.org,
        spec_version=builtin_version("ringrx-sms"),
        label="RingRx",
        properties={"API URL": ringrx_server.url, "API Token": DEFAULT_API_TOKEN},
        secret_properties={"API Secret": DEFAULT_API_SECRET, "Callback Token": "cb-token-1"},
    )
    number = bound_number(tenant_a.org, installation, "+18185559876")
    setup = {"org": tenant_a.org, "number": number}
    with django_capture_on_commit_callbacks(execute=True):
        first = _queued(setup, django_capture_on_commit_callbacks, "first")
    messaging.message_deliver(message_id=first.pk)
    assert Message.objects.get(pk=first.pk).status == Message.Status.SENT
    # The API key was deleted in RingRx: the token, its refresh and a new exchange are refused.
    ringrx_server.api_keys.clear()
    ringrx_server.advance_clock(90_000)

    second = _queued(setup, django_capture_on_commit_callbacks, "second")
    messaging.message_deliver(message_id=second.pk)

    second.refresh_from_db()
    assert second.status == Message.Status.FAILED
    assert "reconnect" in second.error
    installation.refresh_from_db()
    assert installation.status == Installation.Status.NEEDS_RECONNECT
    assert "reconnect" in installation.status_detail
    notice = Notice.objects.get(organization=tenant_a.org)
    assert notice.installation == installation and notice.level == "error"
    assert "RingRx stopped accepting its credentials" in notice.message
    assert "in the integration's Settings" in notice.message
    assert [r.path for r in ringrx_server.requests][-3:] == ["/sms", "/auth/refresh", "/auth/token"]
    assert len(ringrx_server.sent_sms) == 1


def test_a_refused_crm_key_while_logging_a_message_marks_the_crm_needs_reconnect(
    tenant_a: Any,
    sms_server: Any,
    crm_server: Any,
    sms_setup: dict[str, Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    crm = crm_installation(tenant_a.org, crm_server, label="Lookup CRM")
    Installation.objects.filter(pk=crm.pk).update(secret_properties={"API Key": "revoked-key"})
    message = _queued(sms_setup, django_capture_on_commit_callbacks)
    messaging.message_deliver(message_id=message.pk)

    assert messaging.message_crm_log(message=Message.objects.get(pk=message.pk)) == []

    crm.refresh_from_db()
    assert crm.status == Installation.Status.NEEDS_RECONNECT
    notice = Notice.objects.get(organization=tenant_a.org)
    assert notice.installation == crm
    assert "Lookup CRM stopped accepting its credentials" in notice.message


# --- Item: CRM logs and status callbacks left behind ----------------------------------------


def test_a_sent_message_whose_crm_log_task_was_lost_is_logged_once_by_the_sweeper(
    tenant_a: Any,
    crm_server: Any,
    sms_setup: dict[str, Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    crm_installation(tenant_a.org, crm_server)
    message = _queued(sms_setup, django_capture_on_commit_callbacks, "Log me")
    # Sent, then the worker died before the CRM log task was enqueued.
    messaging.message_deliver(message_id=message.pk)
    message.refresh_from_db()
    assert message.status == Message.Status.SENT and message.crm_log_due_at is not None

    assert "0 message CRM log(s)" in _sweep()  # not overdue yet
    assert "1 message CRM log(s)" in _sweep(stuck_after=0)
    assert "0 message CRM log(s)" in _sweep(stuck_after=0)

    logs = [a for a in crm_server.activities.values() if a.get("type") == "sms"]
    assert [a["notes"] for a in logs] == ["Log me"]
    message.refresh_from_db()
    assert list(message.crm_logs.values()) == [logs[0]["id"]]
    assert message.crm_log_due_at is None


def test_a_status_applied_before_a_crash_is_still_forwarded_on_the_rerun(
    client: Any,
    tenant_a: Any,
    recorder: Any,
    sms_setup: dict[str, Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    subscribe(tenant_a.org, "message_status", recorder.url + "/status/{status}")
    message = _queued(sms_setup, django_capture_on_commit_callbacks)
    messaging.message_deliver(message_id=message.pk)
    message.refresh_from_db()
    # The first run of the status event stored the status, then its worker died.
    assert messaging.message_status_apply(message=message, status="delivered")
    recorder.clear()

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/services/example-sms/a{tenant_a.account.pk}",
            data=json.dumps(
                {"method": "status", "params": {"id": message.messageid, "status": "delivered"}}
            ),
            content_type="application/json",
        )
    assert response.status_code == 202, response.content

    [forwarded] = recorder.requests_to("/status/delivered")
    assert forwarded.json["messageid"] == message.messageid
    assert forwarded.json["status"] == "delivered"
