"""The Calls pages and API: what an admin sees and does, and tenant isolation — another
reseller gets 404 on every route."""

from __future__ import annotations

from typing import Any

import pytest

from integrations.models import CallActivity
from tests.integrations.calls.support import (
    TWINS,
    call_event,
    crm_installation,
    deliver,
    mapped_user,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup(
    client: Any, tenant_a: Any, crm_server: Any, django_capture_on_commit_callbacks: Any
) -> Any:
    """Tenant A's org with a CRM installation (review policy), one held and one failed call."""
    org = tenant_a.org
    org.webhook_secret = "calls-webhook-secret-0123456789"
    org.save()
    installation = crm_installation(org, crm_server, match_policy="review")
    mapped_user(installation)
    deliver(
        client,
        org,
        call_event("held-1", "completed", caller_number=TWINS),
        django_capture_on_commit_callbacks,
    )
    crm_server.fail_next("/contacts/search", 400, times=1)
    deliver(client, org, call_event("failed-1", "completed"), django_capture_on_commit_callbacks)
    held = CallActivity.objects.get(call__call_id="held-1")
    failed = CallActivity.objects.get(call__call_id="failed-1")
    assert (held.state, failed.state) == ("held", "failed")
    return held, failed


def test_the_calls_page_lists_calls_with_their_activities_and_errors(
    client: Any, tenant_a: Any, setup: Any
) -> None:
    _held, failed = setup
    client.force_login(tenant_a.org_admin)

    page = client.get(f"/orgs/{tenant_a.org.pk}/calls/")

    assert page.status_code == 200
    text = page.content.decode()
    assert "held-1" in text and "failed-1" in text
    assert "Held: pick the contact" in text
    assert "request rejected" in text  # the failed activity's actionable error
    assert f"/calls/activities/{failed.pk}/retry/" in text
    detail = client.get(f"/orgs/{tenant_a.org.pk}/")
    assert f"/orgs/{tenant_a.org.pk}/calls/".encode() in detail.content


def test_the_retry_button_runs_a_failed_activity_again(
    client: Any,
    tenant_a: Any,
    setup: Any,
    crm_server: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    _held, failed = setup
    client.force_login(tenant_a.org_admin)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/orgs/{tenant_a.org.pk}/calls/activities/{failed.pk}/retry/", follow=True
        )

    assert response.status_code == 200
    failed.refresh_from_db()
    assert failed.state == "created"
    assert len(crm_server.activities_for_call("failed-1")) == 1


def test_the_api_lists_calls_and_activities_and_retries_and_resolves(
    client: Any,
    tenant_a: Any,
    setup: Any,
    crm_server: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    held, failed = setup
    org = tenant_a.org
    client.force_login(tenant_a.reseller)

    calls = client.get(f"/api/v1/organizations/{org.pk}/calls/").json()
    assert {c["call_id"] for c in calls["results"]} == {"held-1", "failed-1"}
    one = next(c for c in calls["results"] if c["call_id"] == "held-1")
    assert one["activities"][0]["state"] == "held"
    assert client.get(f"/api/v1/organizations/{org.pk}/calls/{one['id']}/").status_code == 200

    failed_list = client.get(f"/api/v1/organizations/{org.pk}/call-activities/?state=failed")
    assert [a["id"] for a in failed_list.json()["results"]] == [failed.pk]
    bad = client.get(f"/api/v1/organizations/{org.pk}/call-activities/?state=nope")
    assert bad.status_code == 400 and "state" in bad.json()["errors"]

    with django_capture_on_commit_callbacks(execute=True):
        retried = client.post(f"/api/v1/organizations/{org.pk}/call-activities/{failed.pk}/retry")
    assert retried.status_code == 202
    assert retried.json()["state"] in ("pending", "created")  # the worker's turn next
    failed.refresh_from_db()
    assert failed.state == "created"

    again = client.post(f"/api/v1/organizations/{org.pk}/call-activities/{failed.pk}/retry")
    assert again.status_code == 400 and "state" in again.json()["errors"]

    wrong = client.post(
        f"/api/v1/organizations/{org.pk}/call-activities/{held.pk}/resolve",
        {"contact_id": "c-1"},
        content_type="application/json",
    )
    assert wrong.status_code == 400 and "contact_id" in wrong.json()["errors"]
    with django_capture_on_commit_callbacks(execute=True):
        resolved = client.post(
            f"/api/v1/organizations/{org.pk}/call-activities/{held.pk}/resolve",
            {"contact_id": "c-7"},
            content_type="application/json",
        )
    assert resolved.status_code == 202
    assert resolved.json()["contact_id"] == "c-7"
    held.refresh_from_db()
    assert held.state == "created"
    [activity] = crm_server.activities_for_call("held-1")
    assert activity["contact_id"] == "c-7"


def test_another_reseller_gets_404_on_every_route(
    client: Any, tenant_a: Any, tenant_b: Any, setup: Any
) -> None:
    held, failed = setup
    org = tenant_a.org
    call_pk = held.call_id
    client.force_login(tenant_b.reseller)
    gets = [
        f"/orgs/{org.pk}/calls/",
        f"/orgs/{org.pk}/calls/review/",
        f"/api/v1/organizations/{org.pk}/calls/",
        f"/api/v1/organizations/{org.pk}/calls/{call_pk}/",
        f"/api/v1/organizations/{org.pk}/call-activities/",
    ]
    posts = [
        f"/orgs/{org.pk}/calls/activities/{failed.pk}/retry/",
        f"/orgs/{org.pk}/calls/activities/{held.pk}/resolve/",
        f"/api/v1/organizations/{org.pk}/call-activities/{failed.pk}/retry",
        f"/api/v1/organizations/{org.pk}/call-activities/{held.pk}/resolve",
    ]
    for url in gets:
        assert client.get(url).status_code == 404, url
    for url in posts:
        assert client.post(url, {"contact_id": "c-6"}).status_code == 404, url
    # Their own organization's routes with tenant A's activity ids: 404 too.
    own = tenant_b.org.pk
    assert client.get(f"/api/v1/organizations/{own}/calls/{call_pk}/").status_code == 404
    assert (
        client.post(f"/api/v1/organizations/{own}/call-activities/{failed.pk}/retry").status_code
        == 404
    )
    assert (
        client.post(f"/orgs/{own}/calls/activities/{held.pk}/resolve/", {"contact_id": "c-6"})
    ).status_code == 404
    held.refresh_from_db()
    failed.refresh_from_db()
    assert (held.state, failed.state) == ("held", "failed")


def test_the_sibling_org_admin_cannot_see_the_calls(client: Any, tenant_a: Any, setup: Any) -> None:
    from tests.factories import OrgAdminMembershipFactory

    sibling_admin = OrgAdminMembershipFactory(organization=tenant_a.sibling_org).user
    client.force_login(sibling_admin)
    assert client.get(f"/orgs/{tenant_a.org.pk}/calls/").status_code == 404
    assert client.get(f"/api/v1/organizations/{tenant_a.org.pk}/calls/").status_code == 404


def test_the_calls_page_shows_a_call_whose_event_had_no_numbers(client, db):
    from integrations.models import Call
    from tests.factories import OrganizationFactory, ResellerMembershipFactory

    org = OrganizationFactory()
    reseller = ResellerMembershipFactory(account=org.account)
    Call.objects.create(organization=org, call_id="c-bare", status="ringing", data={})
    client.force_login(reseller.user)

    response = client.get(f"/orgs/{org.pk}/calls/")

    assert response.status_code == 200
    assert "unknown number" in response.content.decode()
