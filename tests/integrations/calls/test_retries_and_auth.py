"""Transient failures are retried with backoff (honouring Retry-After) until delivered once;
refused credentials stop retrying and mark the integration *needs reconnect*."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail

from integrations import call_logging_tasks
from integrations.call_logging import call_activity_retry
from integrations.call_logging_tasks import call_log_retry_delay
from integrations.models import CallActivity, DeliveryLogEntry, Installation, Notice
from tests.factories import OrgAdminMembershipFactory
from tests.integrations.calls.support import (
    call_event,
    crm_installation,
    deliver,
    mapped_user,
    organization,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def org() -> Any:
    return organization()


@pytest.fixture
def installation(org: Any, crm_server: Any) -> Any:
    installation = crm_installation(org, crm_server)
    mapped_user(installation)
    return installation


@pytest.fixture
def countdowns(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The countdown of every retry the task scheduled (eager: the next attempt runs at once)."""
    seen: list[float] = []

    def recording_delay(retry: int, retry_after: float | None = None) -> float:
        seen.append(call_log_retry_delay(retry, retry_after))
        return seen[-1]

    monkeypatch.setattr(call_logging_tasks, "call_log_retry_delay", recording_delay)
    return seen


def test_a_crm_answering_500_three_times_then_200_gets_the_activity_once(
    client: Any,
    org: Any,
    installation: Any,
    crm_server: Any,
    countdowns: list[float],
    django_capture_on_commit_callbacks: Any,
) -> None:
    crm_server.fail_next("/activities", 500, times=3, method="POST")

    deliver(client, org, call_event("c-200", "completed"), django_capture_on_commit_callbacks)

    assert len(crm_server.requests_to("/activities", "POST")) == 4
    assert len(crm_server.activities_for_call("c-200")) == 1
    assert len(countdowns) == 3
    activity = CallActivity.objects.get()
    assert (activity.state, activity.last_error) == ("created", "")
    attempts = DeliveryLogEntry.objects.filter(method_name="CreateActivity").order_by("pk")
    assert [entry.status_code for entry in attempts] == [500, 500, 500, 201]
    assert "the server had an error" in attempts[0].error


def test_a_429_with_retry_after_2_waits_at_least_2_seconds_before_the_next_attempt(
    client: Any, org: Any, installation: Any, crm_server: Any, django_capture_on_commit_callbacks
) -> None:
    crm_server.rate_limit_next("/activities", retry_after=2, method="POST")

    deliver(client, org, call_event("c-201", "completed"), django_capture_on_commit_callbacks)

    first, second = crm_server.requests_to("/activities", "POST")
    assert first.status == 429
    assert second.time - first.time >= 2.0
    assert len(crm_server.activities_for_call("c-201")) == 1


def test_a_long_retry_after_reschedules_the_task_no_sooner_than_asked(
    client: Any,
    org: Any,
    installation: Any,
    crm_server: Any,
    countdowns: list[float],
    django_capture_on_commit_callbacks: Any,
) -> None:
    # Longer than the HTTP door is willing to block a worker: the task is retried later.
    crm_server.rate_limit_next("/activities", retry_after=90, method="POST")

    deliver(client, org, call_event("c-202", "completed"), django_capture_on_commit_callbacks)

    assert countdowns and countdowns[0] >= 90
    assert len(crm_server.activities_for_call("c-202")) == 1


def test_backoff_grows_with_jitter_and_respects_retry_after(settings: Any) -> None:
    settings.CALL_LOG_RETRY_BASE_SECONDS = 10
    settings.CALL_LOG_RETRY_MAX_SECONDS = 600
    first = [call_log_retry_delay(1) for _ in range(50)]
    fifth = [call_log_retry_delay(5) for _ in range(50)]
    assert all(5 <= d <= 10 for d in first)
    assert all(5 <= d <= 160 for d in fifth) and max(fifth) > 10
    assert len(set(first)) > 1  # jitter
    assert call_log_retry_delay(1, retry_after=42) >= 42


def test_after_the_last_retry_the_activity_fails_and_an_admin_can_retry_it(
    client: Any,
    org: Any,
    installation: Any,
    crm_server: Any,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.CALL_LOG_MAX_RETRIES = 2
    crm_server.fail_next("/activities", 503, times=3, method="POST")

    deliver(client, org, call_event("c-203", "completed"), django_capture_on_commit_callbacks)

    activity = CallActivity.objects.get()
    assert activity.state == "failed"
    assert activity.last_error.startswith("Gave up after 3 attempts: 503 from")
    assert crm_server.activities_for_call("c-203") == []

    with django_capture_on_commit_callbacks(execute=True):
        call_activity_retry(activity=activity)

    activity.refresh_from_db()
    assert (activity.state, activity.last_error) == ("created", "")
    assert len(crm_server.activities_for_call("c-203")) == 1


def test_an_expired_token_is_refreshed_once_then_the_call_is_logged(
    client: Any, org: Any, installation: Any, crm_server: Any, django_capture_on_commit_callbacks
) -> None:
    crm_server.expire_tokens()
    old_token = Installation.objects.get(pk=installation.pk).tokens["access_token"]

    deliver(client, org, call_event("c-204", "completed"), django_capture_on_commit_callbacks)

    assert len(crm_server.requests_to("/oauth/token", "POST")) == 1
    assert len(crm_server.activities_for_call("c-204")) == 1
    assert Installation.objects.get(pk=installation.pk).tokens["access_token"] != old_token
    assert CallActivity.objects.get().state == "created"


def test_a_refused_refresh_marks_the_installation_needs_reconnect_and_stops_retrying(
    client: Any,
    org: Any,
    installation: Any,
    crm_server: Any,
    countdowns: list[float],
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.EMAIL_HOST = "smtp.example.com"
    admin = OrgAdminMembershipFactory(organization=org, user__email="admin@customer.example")
    crm_server.expire_tokens()
    crm_server.fail_next(
        "/oauth/token", 400, body={"error": "invalid_grant", "error_description": "revoked"}
    )

    deliver(client, org, call_event("c-205", "completed"), django_capture_on_commit_callbacks)

    installation.refresh_from_db()
    assert installation.status == "needs_reconnect"
    assert "reconnect" in installation.status_detail
    assert countdowns == []  # no retry
    assert len(crm_server.requests_to("/oauth/token", "POST")) == 1
    activity = CallActivity.objects.get()
    assert activity.state == "failed"
    assert "reconnect the integration" in activity.last_error
    # The refused refresh itself is in the delivery log, for the admin to read.
    refused = DeliveryLogEntry.objects.filter(installation=installation, status_code=400)
    assert refused.count() == 1
    assert "invalid_grant" in refused.get().response_body
    notice = Notice.objects.get(organization=org)
    assert notice.installation == installation
    assert notice.level == "error"
    assert [m.to for m in mail.outbox] == [["admin@customer.example"]]
    client.force_login(admin.user)
    page = client.get(f"/orgs/{org.pk}/calls/").content.decode()
    assert "needs to be reconnected" in page
    assert f"/integrations/installations/{installation.pk}/" in page

    # Later events of the call are not sent to the disconnected CRM, and no second notice.
    crm_server.clear()
    deliver(client, org, call_event("c-205", "ringing"), django_capture_on_commit_callbacks)
    deliver(client, org, call_event("c-206", "completed"), django_capture_on_commit_callbacks)
    assert crm_server.requests == []
    assert Notice.objects.count() == 1
    assert len(mail.outbox) == 1
