"""Caller lookup (DESIGN 6): contacts of every CRM installation with contact_url, a strict
per-CRM time budget, a cache per (installation, number) and its invalidation."""

from __future__ import annotations

import time
from typing import Any

import pytest
from rest_framework.test import APIClient

from integrations.lookup import caller_lookup, lookup_cache_invalidate
from integrations.models import DeliveryLogEntry, Installation
from tests.integrations.messaging.support import crm_installation

pytestmark = pytest.mark.django_db

KNOWN = "+14155550100"  # Jane Doe in the generic CRM sandbox, stored in E.164


def _searches(crm_server: Any) -> int:
    return len(crm_server.requests_to("/contacts/search", "GET"))


def test_contacts_of_every_crm_installation_with_contact_url(
    tenant_a: Any, crm_server: Any
) -> None:
    first = crm_installation(tenant_a.org, crm_server, spec_id="crm-one", label="Sales CRM")
    second = crm_installation(tenant_a.org, crm_server, spec_id="crm-two", label="Support CRM")

    result = caller_lookup(organization=tenant_a.org, phone="(415) 555-0100")

    assert result.phone == KNOWN
    assert {c["installation_id"] for c in result.contacts} == {first.pk, second.pk}
    jane = result.contacts[0]
    assert jane["contact_name"] == "Jane Doe"
    assert jane["contact_url"] == f"{crm_server.url}/app/contacts/{jane['contact_id']}"
    assert [s.status for s in result.sources] == ["ok", "ok"]
    assert DeliveryLogEntry.objects.filter(method_name="FindContact").count() == 2


def test_disabled_installations_and_other_orgs_are_not_asked(
    tenant_a: Any, crm_server: Any
) -> None:
    crm_installation(tenant_a.org, crm_server, spec_id="crm-off").__class__.objects.update(
        status=Installation.Status.DISABLED
    )
    crm_installation(tenant_a.sibling_org, crm_server, spec_id="crm-sibling")

    result = caller_lookup(organization=tenant_a.org, phone=KNOWN)
    assert result.contacts == [] and result.sources == []
    assert _searches(crm_server) == 0


def test_a_slow_crm_does_not_exceed_the_budget(
    tenant_a: Any, crm_server: Any, settings: Any
) -> None:
    # A budget a loaded machine meets easily, and a CRM far slower than it: the outcome, not
    # the timing, is asserted (the fast CRM answered, the slow one was cut off).
    budget, slow_seconds = 5.0, 60.0
    settings.LOOKUP_TIMEOUT_SECONDS = budget
    crm_installation(tenant_a.org, crm_server, spec_id="crm-fast", label="Fast")
    crm_server.delay_next("/contacts/search", slow_seconds)  # the first request to arrive
    crm_installation(tenant_a.org, crm_server, spec_id="crm-slow", label="Other")

    started = time.monotonic()
    result = caller_lookup(organization=tenant_a.org, phone=KNOWN)

    assert time.monotonic() - started < slow_seconds / 2  # it did not wait for the slow CRM
    statuses = sorted(s.status for s in result.sources)
    assert statuses == ["ok", "timeout"]
    slow = next(s for s in result.sources if s.status == "timeout")
    assert f"did not answer within {budget:g} s" in slow.error
    assert len(result.contacts) == 1
    assert len(crm_server.requests_to("/contacts/search")) == 2


def test_a_failing_crm_is_an_error_entry_not_a_failure(tenant_a: Any, crm_server: Any) -> None:
    crm_installation(tenant_a.org, crm_server, spec_id="crm-ok")
    crm_installation(tenant_a.org, crm_server, spec_id="crm-bad").__class__.objects.filter(
        spec_version__spec__spec_id="crm-bad"
    ).update(secret_properties={"API Key": "wrong-key"})

    result = caller_lookup(organization=tenant_a.org, phone=KNOWN)
    by_status = {s.status: s for s in result.sources}
    assert set(by_status) == {"ok", "error"}
    assert "401" in by_status["error"].error
    assert len(result.contacts) == 1


def test_a_refused_key_marks_the_installation_needs_reconnect(
    tenant_a: Any, crm_server: Any
) -> None:
    installation = crm_installation(tenant_a.org, crm_server, spec_id="crm-bad")
    Installation.objects.filter(pk=installation.pk).update(
        secret_properties={"API Key": "wrong-key"}
    )

    caller_lookup(organization=tenant_a.org, phone=KNOWN)

    installation.refresh_from_db()
    assert installation.status == Installation.Status.NEEDS_RECONNECT
    assert "401" in installation.status_detail
    [notice] = installation.notices.all()
    assert "stopped accepting its credentials" in notice.message
    assert "“API Key”" in notice.message


def test_second_lookup_is_served_from_the_cache(tenant_a: Any, crm_server: Any) -> None:
    crm_installation(tenant_a.org, crm_server)

    first = caller_lookup(organization=tenant_a.org, phone=KNOWN)
    second = caller_lookup(organization=tenant_a.org, phone="415-555-0100")

    assert _searches(crm_server) == 1
    assert second.contacts == first.contacts
    assert second.sources[0].status == "cached"


def test_no_match_is_cached_too_and_invalidated_when_a_contact_is_created(
    tenant_a: Any, crm_server: Any
) -> None:
    installation = crm_installation(tenant_a.org, crm_server)
    unknown = "+14155550999"
    assert caller_lookup(organization=tenant_a.org, phone=unknown).contacts == []
    assert caller_lookup(organization=tenant_a.org, phone=unknown).sources[0].status == "cached"
    assert _searches(crm_server) == 1

    lookup_cache_invalidate(installation=installation, phone="(415) 555-0999")
    result = caller_lookup(organization=tenant_a.org, phone=unknown)
    assert result.sources[0].status == "ok"
    assert _searches(crm_server) == 2


def test_errors_are_not_cached(tenant_a: Any, crm_server: Any) -> None:
    crm_installation(tenant_a.org, crm_server)
    crm_server.fail_next("/contacts/search", status=500)
    assert caller_lookup(organization=tenant_a.org, phone=KNOWN).sources[0].status == "error"
    assert caller_lookup(organization=tenant_a.org, phone=KNOWN).sources[0].status == "ok"


def test_lookup_api(tenant_a: Any, crm_server: Any) -> None:
    crm_installation(tenant_a.org, crm_server, label="Sales CRM")
    api = APIClient()
    api.force_authenticate(tenant_a.org_admin)

    response = api.get(f"/api/v1/organizations/{tenant_a.org.pk}/lookup", {"phone": KNOWN})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["phone"] == KNOWN
    assert body["contacts"][0]["integration"] == "Sales CRM"
    assert body["contacts"][0]["contact_url"].startswith(crm_server.url)
    assert body["sources"][0]["status"] == "ok"

    bad = api.get(f"/api/v1/organizations/{tenant_a.org.pk}/lookup", {"phone": "nope"})
    assert bad.status_code == 400 and "phone" in bad.json()["errors"]
