"""Delivery log: the page per installation (filter, pagination, detail with redacted bodies)
and pruning by age."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from integrations.delivery_log import delivery_log_get, delivery_log_list, delivery_log_prune
from integrations.models import DeliveryLogEntry
from integrations.tasks import delivery_log_prune_task
from tests.factories import DeliveryLogEntryFactory
from tests.integrations.portal.mapping_support import Tenant, crm_installation

pytestmark = pytest.mark.django_db

SECRET = "s3cr3t-api-key-value"


@pytest.fixture
def installation(tenant_a: Tenant) -> Any:
    installation = crm_installation(tenant_a.org)
    installation.secret_properties = {"API Key": SECRET}
    installation.save()
    return installation


def _log_url(installation: Any) -> str:
    return reverse("integrations:delivery_log", args=[installation.pk])


def test_the_log_lists_every_column_and_filters_by_status(
    client: Client, tenant_a: Tenant, installation: Any
) -> None:
    ok = DeliveryLogEntryFactory(
        installation=installation,
        method_name="CreateActivity",
        http_method="POST",
        status_code=201,
        duration_ms=87,
        produced_ids={"activity_id": "act-1001"},
    )
    failed = DeliveryLogEntryFactory(
        installation=installation,
        method_name="FindContact",
        status_code=401,
        ok=False,
        attempt=2,
        error="401 from CRM: token refresh failed — reconnect the integration",
    )
    client.force_login(tenant_a.org_admin)

    everything = client.get(_log_url(installation))
    only_ok = client.get(_log_url(installation), {"status": "ok"})
    only_failed = client.get(_log_url(installation), {"status": "failed"})

    assert list(everything.context["page"].object_list) == [failed, ok]
    assert list(only_ok.context["page"].object_list) == [ok]
    assert list(only_failed.context["page"].object_list) == [failed]
    html = everything.content.decode()
    for text in ("CreateActivity", "POST", "201", "87 ms", "activity_id=act-1001"):
        assert text in html
    assert "token refresh failed — reconnect the integration" in html
    assert reverse("integrations:delivery_log_detail", args=[installation.pk, ok.pk]) in html


def test_an_unknown_status_filter_shows_everything(
    client: Client, tenant_a: Tenant, installation: Any
) -> None:
    DeliveryLogEntryFactory(installation=installation)
    client.force_login(tenant_a.reseller)

    response = client.get(_log_url(installation), {"status": "bogus"})

    assert response.context["status"] is None
    assert len(response.context["page"].object_list) == 1


def test_the_log_is_paginated(client: Client, tenant_a: Tenant, installation: Any) -> None:
    DeliveryLogEntryFactory.create_batch(55, installation=installation, ok=False, status_code=500)
    client.force_login(tenant_a.reseller)

    first = client.get(_log_url(installation), {"status": "failed"})
    second = client.get(_log_url(installation), {"status": "failed", "page": 2})

    assert len(first.context["page"].object_list) == 50
    assert len(second.context["page"].object_list) == 5
    assert "status=failed&amp;page=2" in first.content.decode()


def test_the_log_shows_only_this_installations_entries(
    client: Client, tenant_a: Tenant, installation: Any
) -> None:
    other = crm_installation(tenant_a.org)
    mine = DeliveryLogEntryFactory(installation=installation)
    DeliveryLogEntryFactory(installation=other)
    client.force_login(tenant_a.reseller)

    response = client.get(_log_url(installation))

    assert list(response.context["page"].object_list) == [mine]


def test_the_detail_shows_the_bodies_with_every_secret_redacted(
    client: Client, tenant_a: Tenant, installation: Any
) -> None:
    # A row that (through some path) still holds the secret: the page must not show it.
    entry = DeliveryLogEntryFactory(
        installation=installation,
        url=f"http://127.0.0.1:9/contacts?api_key={SECRET}",
        request_body=f'{{"key": "{SECRET}", "phone": "+14155550100"}}',
        response_body=f'{{"echo": "{SECRET}", "records": [{{"id": "c-1"}}]}}',
        error=f"401 for key {SECRET}",
        ok=False,
        status_code=401,
    )
    client.force_login(tenant_a.reseller)

    response = client.get(
        reverse("integrations:delivery_log_detail", args=[installation.pk, entry.pk])
    )

    html = response.content.decode()
    assert response.status_code == 200
    assert SECRET not in html
    assert "[redacted]" in html
    assert "+14155550100" in html and "c-1" in html
    # Bodies are pretty-printed JSON.
    assert "&quot;phone&quot;: &quot;+14155550100&quot;" in html


def test_the_detail_of_another_installations_entry_is_404(
    client: Client, tenant_a: Tenant, installation: Any
) -> None:
    foreign = DeliveryLogEntryFactory(installation=crm_installation(tenant_a.org))
    client.force_login(tenant_a.reseller)

    response = client.get(
        reverse("integrations:delivery_log_detail", args=[installation.pk, foreign.pk])
    )

    assert response.status_code == 404


def test_a_real_request_is_logged_without_its_credentials(
    client: Client,
    tenant_a: Tenant,
    crm_server: Any,
    allow_loopback: None,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from integrations.user_mapping import crm_users_fetch_start

    installation = crm_installation(tenant_a.org, crm_server)
    with django_capture_on_commit_callbacks(execute=True):
        crm_users_fetch_start(installation=installation)
    entry = DeliveryLogEntry.objects.get(installation=installation)
    client.force_login(tenant_a.reseller)

    detail = client.get(
        reverse("integrations:delivery_log_detail", args=[installation.pk, entry.pk])
    )

    html = detail.content.decode()
    assert entry.ok and entry.method_name == "Users" and entry.http_method == "GET"
    assert "/users" in html and "Alice Agent" in html
    assert "crm-sandbox-api-key" not in html


def test_selectors_are_scoped_to_the_acting_user(
    tenant_a: Tenant, tenant_b: Tenant, installation: Any
) -> None:
    from django.http import Http404

    entry = DeliveryLogEntryFactory(installation=installation)

    assert list(delivery_log_list(user=tenant_b.reseller, installation=installation)) == []
    with pytest.raises(Http404):
        delivery_log_get(user=tenant_b.reseller, pk=entry.pk)
    assert delivery_log_get(user=tenant_a.org_admin, pk=entry.pk) == entry


# --- Pruning ----------------------------------------------------------------------------------


def _age(entry: DeliveryLogEntry, days: float) -> None:
    DeliveryLogEntry.objects.filter(pk=entry.pk).update(
        created_at=timezone.now() - dt.timedelta(days=days)
    )


def test_the_sweep_command_prunes_old_entries(installation: Any, settings: Any) -> None:
    # `make run` has no Celery beat: its `sweep --every 30` keeps the log to its retention.
    settings.DELIVERY_LOG_RETENTION_DAYS = 30
    old = DeliveryLogEntryFactory(installation=installation)
    recent = DeliveryLogEntryFactory(installation=installation)
    _age(old, 31)
    _age(recent, 29)
    out = io.StringIO()

    call_command("sweep", stdout=out)

    assert list(DeliveryLogEntry.objects.values_list("pk", flat=True)) == [recent.pk]
    assert "Pruned 1 delivery-log entry(ies)." in out.getvalue()


def test_prune_deletes_old_entries_only(installation: Any) -> None:
    old = DeliveryLogEntryFactory(installation=installation)
    older = DeliveryLogEntryFactory(installation=installation)
    recent = DeliveryLogEntryFactory(installation=installation)
    fresh = DeliveryLogEntryFactory(installation=installation)
    _age(old, 31)
    _age(older, 400)
    _age(recent, 29)

    deleted = delivery_log_prune()

    assert deleted == 2
    assert set(DeliveryLogEntry.objects.values_list("pk", flat=True)) == {recent.pk, fresh.pk}


def test_prune_honours_an_explicit_age_and_the_retention_setting(
    installation: Any, settings: Any
) -> None:
    entry = DeliveryLogEntryFactory(installation=installation)
    _age(entry, 5)

    assert delivery_log_prune(older_than_days=10) == 0
    settings.DELIVERY_LOG_RETENTION_DAYS = 3
    assert delivery_log_prune() == 1


def test_the_prune_task_runs_daily_and_uses_the_service(installation: Any) -> None:
    _age(DeliveryLogEntryFactory(installation=installation), 90)

    assert delivery_log_prune_task.delay().get() == 1
    schedule = settings.CELERY_BEAT_SCHEDULE["delivery-log-prune"]
    assert schedule["task"] == delivery_log_prune_task.name
    assert settings.DELIVERY_LOG_RETENTION_DAYS == 30


def test_the_list_is_redacted_like_the_detail_on_the_page_and_in_the_api(
    client: Client, tenant_a: Tenant, installation: Any
) -> None:
    """A row written before the secret was entered (or by another path) still has it in its
    URL and error: the list must not show it any more than the detail does."""
    planted = DeliveryLogEntryFactory(
        installation=installation,
        ok=False,
        status_code=401,
        url=f"http://127.0.0.1:9/contacts/search?api_key={SECRET}",
        error=f"401 from CRM: key {SECRET} rejected",
    )
    client.force_login(tenant_a.reseller)

    page = client.get(_log_url(installation)).content.decode()
    listed = client.get(
        reverse("integrations-api:delivery-log-list", args=[installation.pk])
    ).json()["results"]
    selected = delivery_log_list(user=tenant_a.reseller, installation=installation)[0]

    assert SECRET not in page
    assert "key [redacted] rejected" in page
    assert [row["id"] for row in listed] == [planted.pk]
    assert listed[0]["url"].endswith("api_key=[redacted]")
    assert listed[0]["error"] == "401 from CRM: key [redacted] rejected"
    assert SECRET not in selected.url + selected.error
    planted.refresh_from_db()
    assert SECRET in planted.url  # only what is shown is redacted, the row is left as it was
