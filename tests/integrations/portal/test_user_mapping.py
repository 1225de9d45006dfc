"""User mapping: CRM users fetched through the spec's `Users` method from the generic CRM
sandbox, matched to PBX users by email, changed by hand, and kept across re-fetches."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from integrations.models import CrmUser, DeliveryLogEntry, UserFetch, UserMapping
from integrations.user_mapping import (
    crm_users_fetch,
    crm_users_fetch_start,
    user_mapping_for,
    user_mapping_reset,
    user_mapping_rows,
    user_mapping_set,
)
from tests.factories import CrmUserFactory, PbxUserFactory
from tests.integrations.portal.mapping_support import Tenant, crm_installation, sms_installation

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("allow_loopback")]


@pytest.fixture
def org_users(tenant_a: Tenant) -> dict[str, Any]:
    """PBX users of tenant A's org: one whose email matches Alice in another case, one with no
    CRM counterpart, one without email (plus the tenant's own default user)."""
    org = tenant_a.org
    return {
        "alice": PbxUserFactory(organization=org, name="Alice PBX", email="ALICE@crm.example"),
        "bob": PbxUserFactory(organization=org, name="Bob PBX", email="bob@crm.example"),
        "zed": PbxUserFactory(organization=org, name="Zed Nobody", email="zed@elsewhere.example"),
        "noemail": PbxUserFactory(organization=org, name="No Email", email=""),
    }


@pytest.fixture
def fetch_users(django_capture_on_commit_callbacks: Any) -> Any:
    """Start a fetch as a view would and commit: the task runs on commit (eagerly here,
    without a broker)."""

    def fetch(installation: Any) -> UserFetch:
        with django_capture_on_commit_callbacks(execute=True):
            started = crm_users_fetch_start(installation=installation)
        started.refresh_from_db()
        return started

    return fetch


def _rows_by_name(installation: Any) -> dict[str, Any]:
    return {row.pbx_user.name: row for row in user_mapping_rows(installation=installation)}


def test_fetch_stores_crm_users_and_auto_matches_by_email_case_insensitively(
    tenant_a: Tenant, org_users: dict[str, Any], crm_server: Any, fetch_users: Any
) -> None:
    installation = crm_installation(tenant_a.org, crm_server)

    fetch = fetch_users(installation)

    assert fetch.state == UserFetch.State.DONE, fetch.error
    assert fetch.fetched == 4
    assert fetch.finished_at is not None
    stored = {c.external_id: (c.name, c.email, c.present) for c in installation.crm_users.all()}
    assert stored == {
        "u-1001": ("Alice Agent", "alice@crm.example", True),
        "u-1002": ("Bob Builder", "bob@crm.example", True),
        "u-1003": ("Carol Closer", "carol@crm.example", True),
        "u-1004": ("Dan Departed", "dan@crm.example", True),
    }
    rows = _rows_by_name(installation)
    assert rows["Alice PBX"].crm_user.external_id == "u-1001"
    assert rows["Alice PBX"].status == "auto" and rows["Alice PBX"].matched
    assert rows["Bob PBX"].crm_user.external_id == "u-1002"
    assert rows["Zed Nobody"].status == "unmatched" and rows["Zed Nobody"].crm_user is None
    assert rows["No Email"].status == "unmatched"
    # The request went out with the API key and was logged (the key itself never is).
    assert crm_server.requests_to("/users")[0].header("Authorization") == (
        "Bearer crm-sandbox-api-key"
    )
    entry = DeliveryLogEntry.objects.get(installation=installation, method_name="Users")
    assert entry.ok and "crm-sandbox-api-key" not in entry.url + entry.request_body


def test_fetch_runs_as_a_task_enqueued_on_commit(
    tenant_a: Tenant, org_users: dict[str, Any], crm_server: Any, django_capture_on_commit_callbacks
) -> None:
    installation = crm_installation(tenant_a.org, crm_server)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        fetch = crm_users_fetch_start(installation=installation)

    # Nothing ran before the commit: the row is pending and no request was sent.
    assert UserFetch.objects.get(pk=fetch.pk).state == UserFetch.State.PENDING
    assert crm_server.requests_to("/users") == []
    assert len(callbacks) == 1
    callbacks[0]()
    assert UserFetch.objects.get(pk=fetch.pk).state == UserFetch.State.DONE


def test_a_second_start_while_one_is_pending_reuses_it(
    tenant_a: Tenant, crm_server: Any, django_capture_on_commit_callbacks
) -> None:
    installation = crm_installation(tenant_a.org, crm_server)

    with django_capture_on_commit_callbacks(execute=False):
        first = crm_users_fetch_start(installation=installation)
        second = crm_users_fetch_start(installation=installation)

    assert first.pk == second.pk
    assert UserFetch.objects.filter(installation=installation).count() == 1


def test_refetch_keeps_manual_choices_and_flags_crm_users_that_disappeared(
    tenant_a: Tenant, org_users: dict[str, Any], crm_server: Any, fetch_users: Any
) -> None:
    installation = crm_installation(tenant_a.org, crm_server)
    fetch_users(installation)
    carol = CrmUser.objects.get(installation=installation, external_id="u-1003")
    bob_crm = CrmUser.objects.get(installation=installation, external_id="u-1002")
    # Zed is mapped to Carol by hand; Alice is deliberately unmapped by hand.
    user_mapping_set(installation=installation, pbx_user=org_users["zed"], crm_user=carol)
    user_mapping_set(installation=installation, pbx_user=org_users["alice"], crm_user=None)
    # The CRM deletes Carol and Bob.
    with crm_server.lock:
        crm_server.users[:] = [u for u in crm_server.users if u["id"] not in ("u-1002", "u-1003")]

    fetch = fetch_users(installation)

    assert fetch.state == UserFetch.State.DONE
    carol.refresh_from_db()
    bob_crm.refresh_from_db()
    assert (carol.present, bob_crm.present) == (False, False)
    rows = _rows_by_name(installation)
    assert rows["Zed Nobody"].crm_user == carol and rows["Zed Nobody"].manual
    assert rows["Zed Nobody"].status == "disappeared" and rows["Zed Nobody"].stale
    assert rows["Alice PBX"].manual and rows["Alice PBX"].crm_user is None
    assert rows["Alice PBX"].status == "unmatched"
    # Bob's automatic match went with his CRM user.
    assert rows["Bob PBX"].status == "unmatched"
    # A CRM user who comes back is present again and matched again.
    with crm_server.lock:
        crm_server.users.append(
            {"id": "u-1002", "name": "Bob Builder", "email": "Bob@CRM.example", "active": True}
        )
    fetch_users(installation)
    rows = _rows_by_name(installation)
    assert rows["Bob PBX"].status == "auto" and rows["Bob PBX"].crm_user == bob_crm


def test_reset_returns_a_manual_row_to_the_email_match(
    tenant_a: Tenant, org_users: dict[str, Any], crm_server: Any, fetch_users: Any
) -> None:
    installation = crm_installation(tenant_a.org, crm_server)
    fetch_users(installation)
    carol = CrmUser.objects.get(installation=installation, external_id="u-1003")
    user_mapping_set(installation=installation, pbx_user=org_users["alice"], crm_user=carol)

    mapping = user_mapping_reset(installation=installation, pbx_user=org_users["alice"])

    assert mapping is not None and not mapping.manual
    assert mapping.crm_user.external_id == "u-1001"


def test_a_failed_fetch_is_recorded_with_an_actionable_message(
    tenant_a: Tenant, org_users: dict[str, Any], crm_server: Any, fetch_users: Any
) -> None:
    installation = crm_installation(tenant_a.org, crm_server)
    installation.secret_properties = {"API Key": "wrong-key"}
    installation.save()

    fetch = fetch_users(installation)

    assert fetch.state == UserFetch.State.FAILED
    assert "401" in fetch.error
    assert "wrong-key" not in fetch.error
    assert not CrmUser.objects.filter(installation=installation).exists()


def test_a_finished_fetch_is_not_run_twice(
    tenant_a: Tenant, crm_server: Any, fetch_users: Any
) -> None:
    installation = crm_installation(tenant_a.org, crm_server)
    fetch = fetch_users(installation)
    requests_before = len(crm_server.requests_to("/users"))

    again = crm_users_fetch(fetch_id=fetch.pk)

    assert again.state == UserFetch.State.DONE
    assert len(crm_server.requests_to("/users")) == requests_before


def test_user_mapping_for_gives_the_crm_user_values_for_call_logging(
    tenant_a: Tenant, org_users: dict[str, Any], crm_server: Any, fetch_users: Any
) -> None:
    installation = crm_installation(tenant_a.org, crm_server)
    fetch_users(installation)

    assert user_mapping_for(installation=installation, pbx_user=org_users["alice"]) == {
        "user_id": "u-1001",
        "user_name": "Alice Agent",
        "user_email": "alice@crm.example",
    }
    assert user_mapping_for(installation=installation, pbx_user=org_users["zed"]) == {}


def test_user_mapping_for_ignores_a_crm_user_that_disappeared(tenant_a: Tenant) -> None:
    installation = crm_installation(tenant_a.org)
    gone = CrmUserFactory(installation=installation, present=False)
    user_mapping_set(installation=installation, pbx_user=tenant_a.pbx_user, crm_user=gone)

    assert user_mapping_for(installation=installation, pbx_user=tenant_a.pbx_user) == {}


def test_a_crm_user_of_another_installation_cannot_be_chosen(tenant_a: Tenant) -> None:
    installation = crm_installation(tenant_a.org)
    other = crm_installation(tenant_a.org)
    foreign = CrmUserFactory(installation=other)

    with pytest.raises(ValidationError) as error:
        user_mapping_set(installation=installation, pbx_user=tenant_a.pbx_user, crm_user=foreign)

    assert "crm_user" in error.value.message_dict
    assert not UserMapping.objects.filter(installation=installation).exists()


def test_a_pbx_user_of_another_organization_cannot_be_mapped(tenant_a: Tenant) -> None:
    installation = crm_installation(tenant_a.org)
    sibling_user = PbxUserFactory(organization=tenant_a.sibling_org)

    with pytest.raises(ValidationError) as error:
        user_mapping_set(installation=installation, pbx_user=sibling_user, crm_user=None)

    assert "pbx_user" in error.value.message_dict


def test_an_ambiguous_email_is_left_unmatched(tenant_a: Tenant) -> None:
    from integrations.user_mapping import user_mapping_auto_match

    installation = crm_installation(tenant_a.org)
    pbx_user = PbxUserFactory(organization=tenant_a.org, email="Shared@crm.example")
    CrmUserFactory(installation=installation, email="shared@crm.example")
    CrmUserFactory(installation=installation, email="SHARED@crm.example")

    user_mapping_auto_match(installation=installation)

    assert not UserMapping.objects.filter(installation=installation, pbx_user=pbx_user).exists()


# --- The page ---------------------------------------------------------------------------------


def _page(client: Client, installation: Any) -> Any:
    return client.get(reverse("integrations:user_mapping", args=[installation.pk]))


def test_the_page_fetches_shows_progress_status_and_the_table(
    client: Client,
    tenant_a: Tenant,
    org_users: dict[str, Any],
    crm_server: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    installation = crm_installation(tenant_a.org, crm_server)
    client.force_login(tenant_a.reseller)

    empty = _page(client, installation)
    assert b"have not been fetched yet" in empty.content
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("integrations:user_mapping_fetch", args=[installation.pk]))
    assert response.status_code == 302
    status = client.get(
        reverse("integrations:user_mapping_fetch_status", args=[installation.pk])
    ).json()
    page = _page(client, installation)

    assert status["state"] == "done" and not status["active"]
    assert status["fetched"] == 4 and status["crm_users"] == 4
    html = page.content.decode()
    assert "Fetched 4 CRM user(s)." in html
    assert "Auto-matched by email" in html and "Unmatched" in html
    assert "Alice Agent" in html and "Carol Closer" in html
    assert 'class="searchable-select"' in html and "js/user_mapping.js" in html


def test_the_page_shows_a_pending_fetch_with_a_polling_hook(
    client: Client, tenant_a: Tenant, crm_server: Any, django_capture_on_commit_callbacks
) -> None:
    installation = crm_installation(tenant_a.org, crm_server)
    client.force_login(tenant_a.org_admin)
    with django_capture_on_commit_callbacks(execute=False):
        crm_users_fetch_start(installation=installation)

    page = _page(client, installation).content.decode()
    status = client.get(
        reverse("integrations:user_mapping_fetch_status", args=[installation.pk])
    ).json()

    assert "is-active" in page and 'http-equiv="refresh"' in page
    assert status["state"] == "pending" and status["active"]


def test_saving_the_page_changes_only_the_rows_that_changed(
    client: Client, tenant_a: Tenant, org_users: dict[str, Any], crm_server: Any, fetch_users: Any
) -> None:
    installation = crm_installation(tenant_a.org, crm_server)
    fetch_users(installation)
    carol = CrmUser.objects.get(installation=installation, external_id="u-1003")
    client.force_login(tenant_a.reseller)
    rows = _rows_by_name(installation)
    form = {f"crm_user_{row.pbx_user.pk}": "auto" for row in rows.values()}
    form[f"crm_user_{org_users['zed'].pk}"] = str(carol.pk)

    response = client.post(reverse("integrations:user_mapping", args=[installation.pk]), form)

    assert response.status_code == 302
    rows = _rows_by_name(installation)
    assert rows["Zed Nobody"].status == "manual" and rows["Zed Nobody"].crm_user == carol
    # Alice stays automatic: an unchanged select is not turned into a manual choice.
    assert rows["Alice PBX"].status == "auto" and not rows["Alice PBX"].manual


def test_a_crm_user_of_another_installation_posted_to_the_page_saves_nothing(
    client: Client, tenant_a: Tenant, org_users: dict[str, Any]
) -> None:
    installation = crm_installation(tenant_a.org)
    foreign = CrmUserFactory(installation=crm_installation(tenant_a.org))
    client.force_login(tenant_a.reseller)

    response = client.post(
        reverse("integrations:user_mapping", args=[installation.pk]),
        {f"crm_user_{org_users['zed'].pk}": str(foreign.pk), f"crm_user_{org_users['bob'].pk}": ""},
        follow=True,
    )

    assert "not one of this CRM" in response.content.decode()
    assert not UserMapping.objects.filter(installation=installation).exists()


def test_an_sms_installation_has_no_user_mapping_page(client: Client, tenant_a: Tenant) -> None:
    installation = sms_installation(tenant_a.org)
    client.force_login(tenant_a.reseller)

    assert _page(client, installation).status_code == 404
    with pytest.raises(ValidationError):
        crm_users_fetch_start(installation=installation)
