"""The Events page and API: an admin finds a failed webhook with its error and runs it again;
only failed or ignored events can be; the raw body and headers never leave the server; and
tenant isolation — another reseller gets 404 on every route, anonymous users are refused."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.messages import get_messages
from rest_framework.test import APIClient

from integrations import inbox
from integrations.inbox import inbox_event_process, inbox_event_store, inbox_handler
from integrations.models import InboxEvent
from tests.tenants.conftest import Tenant

pytestmark = pytest.mark.django_db

OUTPUT_FIELDS = {
    "id",
    "source",
    "event_type",
    "state",
    "attempts",
    "last_error",
    "received_at",
    "processed_at",
}


@pytest.fixture
def registry() -> Iterator[list[str]]:
    """Handlers registered by a test are forgotten after it."""
    inbox.inbox_handlers_load()
    saved = {key: list(handlers) for key, handlers in inbox._handlers.items()}
    calls: list[str] = []
    yield calls
    inbox._handlers.clear()
    inbox._handlers.update(saved)


@pytest.fixture
def failed_event(registry: list[str], tenant_a: Tenant) -> InboxEvent:
    """Tenant A's event whose handler fails the first time and succeeds the second."""
    outcomes: list[Exception | None] = [ValueError("the CRM rejected the call"), None]

    @inbox_handler("pbx", "test_replay")
    def flaky(event: InboxEvent) -> None:
        registry.append("flaky")
        outcome = outcomes.pop(0)
        if outcome:
            raise outcome

    event, _ = inbox_event_store(
        source="pbx",
        event_type="test_replay",
        dedup_key="replay-1",
        organization=tenant_a.org,
        body='{"call_id": "c-1", "token": "body-secret-value"}',
        headers={"X-Secret": "header-secret-value"},
    )
    inbox_event_process(event_id=event.pk)
    event.refresh_from_db()
    assert (event.state, event.attempts) == ("failed", 1)
    return event


def _done_event(tenant: Tenant) -> InboxEvent:
    event, _ = inbox_event_store(
        source="pbx", event_type="test_done", dedup_key="done-1", organization=tenant.org
    )
    InboxEvent.objects.filter(pk=event.pk).update(state=InboxEvent.State.DONE, attempts=1)
    event.refresh_from_db()
    return event


# --- Web UI ----------------------------------------------------------------------------------


def test_the_events_page_lists_a_failed_event_with_its_error(
    client: Any, tenant_a: Tenant, failed_event: InboxEvent
) -> None:
    done = _done_event(tenant_a)
    client.force_login(tenant_a.org_admin)

    page = client.get(f"/orgs/{tenant_a.org.pk}/events/")

    assert page.status_code == 200
    text = page.content.decode()
    assert "test_replay" in text and "test_done" in text
    assert "flaky: ValueError: the CRM rejected the call" in text
    assert f"/orgs/{tenant_a.org.pk}/events/{failed_event.pk}/replay/" in text
    assert f"/orgs/{tenant_a.org.pk}/events/{done.pk}/replay/" not in text
    assert "body-secret-value" not in text and "header-secret-value" not in text

    failed_only = client.get(f"/orgs/{tenant_a.org.pk}/events/?state=failed").content.decode()
    assert "test_replay" in failed_only and "test_done" not in failed_only
    detail = client.get(f"/orgs/{tenant_a.org.pk}/")
    assert f"/orgs/{tenant_a.org.pk}/events/".encode() in detail.content


def test_the_events_page_is_paginated_by_50(client: Any, tenant_a: Tenant) -> None:
    for number in range(51):
        inbox_event_store(
            source="pbx", event_type="call", dedup_key=f"k{number}", organization=tenant_a.org
        )
    client.force_login(tenant_a.org_admin)

    first = client.get(f"/orgs/{tenant_a.org.pk}/events/")
    second = client.get(f"/orgs/{tenant_a.org.pk}/events/?page=2")

    assert len(first.context["page"].object_list) == 50
    assert len(second.context["page"].object_list) == 1
    assert "Page 1 of 2" in first.content.decode()


def test_the_replay_button_runs_a_failed_event_again(
    client: Any,
    tenant_a: Tenant,
    failed_event: InboxEvent,
    registry: list[str],
    django_capture_on_commit_callbacks: Any,
) -> None:
    client.force_login(tenant_a.org_admin)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/orgs/{tenant_a.org.pk}/events/{failed_event.pk}/replay/")

    assert response.status_code == 302
    assert response["Location"] == f"/orgs/{tenant_a.org.pk}/events/"
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        f"Event {failed_event.pk} queued again"
    ]
    failed_event.refresh_from_db()
    assert (failed_event.state, failed_event.attempts, failed_event.last_error) == ("done", 2, "")
    assert registry == ["flaky", "flaky"]


def test_replaying_a_done_event_from_the_page_is_refused(
    client: Any, tenant_a: Tenant, django_capture_on_commit_callbacks: Any
) -> None:
    done = _done_event(tenant_a)
    client.force_login(tenant_a.org_admin)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post(f"/orgs/{tenant_a.org.pk}/events/{done.pk}/replay/", follow=True)

    assert response.status_code == 200
    messages = list(response.context["messages"])
    assert [(m.level_tag, str(m)) for m in messages] == [
        ("error", "Only failed or ignored events can be run again.")
    ]
    assert callbacks == []
    done.refresh_from_db()
    assert (done.state, done.attempts) == ("done", 1)


# --- REST API --------------------------------------------------------------------------------


def test_the_api_lists_events_without_body_or_headers(
    tenant_a: Tenant, failed_event: InboxEvent
) -> None:
    _done_event(tenant_a)
    api = APIClient()
    api.force_authenticate(tenant_a.reseller)

    listed = api.get(f"/api/v1/organizations/{tenant_a.org.pk}/events/")
    failed = api.get(f"/api/v1/organizations/{tenant_a.org.pk}/events/?state=failed")
    bad = api.get(f"/api/v1/organizations/{tenant_a.org.pk}/events/?state=nope")

    assert listed.status_code == 200
    assert listed.json()["count"] == 2
    assert all(set(row) == OUTPUT_FIELDS for row in listed.json()["results"])
    assert b"secret-value" not in listed.content
    [row] = failed.json()["results"]
    assert row["id"] == failed_event.pk
    assert row["last_error"] == "flaky: ValueError: the CRM rejected the call"
    assert bad.status_code == 400 and "state" in bad.json()["errors"]


def test_the_api_replays_a_failed_event_and_refuses_a_done_one(
    tenant_a: Tenant,
    failed_event: InboxEvent,
    django_capture_on_commit_callbacks: Any,
) -> None:
    api = APIClient()
    api.force_authenticate(tenant_a.reseller)
    url = f"/api/v1/organizations/{tenant_a.org.pk}/events/{failed_event.pk}/replay/"

    with django_capture_on_commit_callbacks(execute=True):
        replayed = api.post(url)

    assert replayed.status_code == 202
    assert set(replayed.json()) == OUTPUT_FIELDS
    assert replayed.json()["id"] == failed_event.pk
    failed_event.refresh_from_db()
    assert (failed_event.state, failed_event.attempts) == ("done", 2)

    again = api.post(url)

    assert again.status_code == 400
    assert again.json()["message"] == "Only failed or ignored events can be run again."
    failed_event.refresh_from_db()
    assert failed_event.state == "done"


# --- Tenant isolation --------------------------------------------------------------------------


def test_another_reseller_gets_404_on_every_route(
    client: Any, tenant_a: Tenant, tenant_b: Tenant, failed_event: InboxEvent
) -> None:
    org = tenant_a.org.pk
    own = tenant_b.org.pk
    pk = failed_event.pk
    client.force_login(tenant_b.reseller)
    gets = [
        f"/orgs/{org}/events/",
        f"/orgs/{org}/events/?state=failed",
        f"/api/v1/organizations/{org}/events/",
    ]
    posts = [
        f"/orgs/{org}/events/{pk}/replay/",
        f"/api/v1/organizations/{org}/events/{pk}/replay/",
        # Their own organization with tenant A's event id: 404 too.
        f"/orgs/{own}/events/{pk}/replay/",
        f"/api/v1/organizations/{own}/events/{pk}/replay/",
    ]

    for url in gets:
        assert client.get(url).status_code == 404, url
    for url in posts:
        assert client.post(url).status_code == 404, url
    # Their own list does not show tenant A's event.
    own_list = client.get(f"/api/v1/organizations/{own}/events/").json()
    assert own_list["count"] == 0
    failed_event.refresh_from_db()
    assert (failed_event.state, failed_event.attempts) == ("failed", 1)


def test_the_sibling_org_admin_cannot_see_the_events(
    client: Any, tenant_a: Tenant, failed_event: InboxEvent
) -> None:
    from tests.factories import OrgAdminMembershipFactory

    client.force_login(OrgAdminMembershipFactory(organization=tenant_a.sibling_org).user)

    assert client.get(f"/orgs/{tenant_a.org.pk}/events/").status_code == 404
    assert client.get(f"/api/v1/organizations/{tenant_a.org.pk}/events/").status_code == 404
    assert (
        client.post(f"/orgs/{tenant_a.org.pk}/events/{failed_event.pk}/replay/").status_code == 404
    )


def test_anonymous_users_are_sent_to_login_or_refused(
    client: Any, tenant_a: Tenant, failed_event: InboxEvent
) -> None:
    org = tenant_a.org.pk
    pk = failed_event.pk

    for response in (
        client.get(f"/orgs/{org}/events/"),
        client.post(f"/orgs/{org}/events/{pk}/replay/"),
    ):
        assert response.status_code == 302
        assert "/login/" in response["Location"]
    api = APIClient()
    assert api.get(f"/api/v1/organizations/{org}/events/").status_code == 401
    assert api.post(f"/api/v1/organizations/{org}/events/{pk}/replay/").status_code == 401
    failed_event.refresh_from_db()
    assert failed_event.state == "failed"
