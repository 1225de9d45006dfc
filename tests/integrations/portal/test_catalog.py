"""The catalog: built-in specs plus the account's approved custom specs; custom spec upload
(every problem shown with its JSON pointer); the approval gate (staff page and Django admin);
an organization of another account never sees a custom spec."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.apps import apps
from django.contrib.admin.sites import site as admin_site
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client, RequestFactory
from django.urls import reverse

from integrations.admin import approve_versions
from integrations.apps import load_builtin_specs
from integrations.models import IntegrationSpec, SpecVersion
from integrations.selectors import catalog_for_organization
from integrations.services import builtin_specs_sync
from tests.factories import UserFactory
from tests.integrations.portal.portal_support import approved_version, bearer_crm_document
from tests.tenants.conftest import Tenant

pytestmark = pytest.mark.django_db

BROKEN_DOCUMENT = {
    "id": "broken-crm",
    "name": "Broken CRM",
    "class": "crm",
    "properties": [{"name": "Base URL", "type": "colour"}],
    "resource_url": "$Base URL$",
    "API": {"Users": {"request_method": "GET", "request_path": "/users/$nope$"}},
}


def _upload(client: Client, document: dict[str, Any] | str, **extra: Any) -> Any:
    text = document if isinstance(document, str) else json.dumps(document)
    return client.post(reverse("integrations:spec_upload"), {"text": text, **extra})


def _catalog_ids(client: Client, organization: Any) -> list[str]:
    response = client.get(reverse("integrations:catalog", args=[organization.pk]))
    assert response.status_code == 200
    return [
        e.spec.spec_id for e in response.context["crm_entries"] + response.context["sms_entries"]
    ]


def test_builtin_specs_are_in_every_catalog_with_readiness_and_logo(
    client: Client, tenant_a: Tenant
) -> None:
    builtin_specs_sync()
    client.force_login(tenant_a.org_admin)

    response = client.get(reverse("integrations:catalog", args=[tenant_a.org.pk]))

    crm = {e.spec.spec_id: e for e in response.context["crm_entries"]}
    sms = {e.spec.spec_id: e for e in response.context["sms_entries"]}
    assert {"example-crm", "zoho-phonebridge"} <= set(crm)
    assert {"example-sms"} <= set(sms)
    assert all(e.readiness is not None for e in crm.values())
    assert all(e.readiness is None for e in sms.values())
    page = response.content.decode()
    assert "/static/img/integrations/example-crm.svg" in page
    assert f"Readiness {crm['example-crm'].readiness.score}/100" in page
    enable = reverse(
        "integrations:installation_create", args=[tenant_a.org.pk, crm["example-crm"].spec.pk]
    )
    assert enable in page


def test_spec_page_shows_readiness_methods_properties_and_versions(
    client: Client, tenant_a: Tenant
) -> None:
    builtin_specs_sync()
    spec = IntegrationSpec.objects.get(account__isnull=True, spec_id="example-crm")
    client.force_login(tenant_a.reseller)

    response = client.get(
        reverse("integrations:spec_detail", args=[spec.pk]), {"org": tenant_a.org.pk}
    )

    page = response.content.decode()
    assert "App Connect readiness" in page and 'data-status="present"' in page
    assert "FindContact" in page and "/contacts/search" in page and "GET" in page
    assert "Client Secret" in page and "secret" in page
    assert "v1" in page and "Approved" in page
    assert reverse("integrations:installation_create", args=[tenant_a.org.pk, spec.pk]) in page


def test_upload_with_several_errors_shows_them_all_with_pointers(
    client: Client, tenant_a: Tenant
) -> None:
    client.force_login(tenant_a.reseller)

    response = _upload(client, BROKEN_DOCUMENT)

    assert response.status_code == 200
    problems = response.context["problems"]
    assert {p["pointer"] for p in problems} == {
        "/properties/0/type",
        "/API/Users/request_path",
        "/API",
    }
    page = response.content.decode()
    assert "3 problems" in page
    assert "/API/Users/request_path" in page and "unknown placeholder $nope$" in page
    assert "a crm spec needs a FindContact method" in page
    assert not IntegrationSpec.objects.filter(spec_id="broken-crm").exists()


def test_upload_of_invalid_json_says_where(client: Client, tenant_a: Tenant) -> None:
    client.force_login(tenant_a.reseller)

    response = _upload(client, '{"id": "x",, }')

    assert "not valid JSON" in response.content.decode()
    assert "line 1" in response.content.decode()


def test_valid_upload_waits_for_approval_then_appears_in_the_catalog(
    client: Client, tenant_a: Tenant
) -> None:
    client.force_login(tenant_a.reseller)
    document = bearer_crm_document("alpha-custom-crm")

    response = client.post(
        reverse("integrations:spec_upload"),
        {"file": SimpleUploadedFile("spec.json", json.dumps(document).encode())},
    )

    version = SpecVersion.objects.get(spec__spec_id="alpha-custom-crm")
    assert response.status_code == 302
    assert version.status == SpecVersion.Status.SUBMITTED
    assert version.spec.account == tenant_a.account and version.uploaded_by == tenant_a.reseller
    assert "alpha-custom-crm" not in _catalog_ids(client, tenant_a.org)
    assert "Submitted" in client.get(response["Location"]).content.decode()
    enable = reverse("integrations:installation_create", args=[tenant_a.org.pk, version.spec_id])
    assert client.get(enable).status_code == 404

    staff = UserFactory(is_staff=True)
    client.force_login(staff)
    review_page = client.get(reverse("integrations:spec_review_list")).content.decode()
    assert "Alpha Custom Crm v1" in review_page
    client.post(reverse("integrations:spec_review", args=[version.pk]), {"decision": "approve"})

    version.refresh_from_db()
    assert version.status == SpecVersion.Status.APPROVED and version.reviewed_by == staff
    client.force_login(tenant_a.org_admin)
    assert "alpha-custom-crm" in _catalog_ids(client, tenant_a.org)
    assert client.get(enable).status_code == 200


def test_an_account_spec_reusing_a_built_in_id_cannot_be_approved(
    client: Client, tenant_a: Tenant
) -> None:
    # Uploaded before built-in ids were reserved (an upload is refused now).
    builtin_specs_sync()
    document = json.loads(
        json.dumps(
            IntegrationSpec.objects.get(account=None, spec_id="example-crm")
            .versions.first()
            .document
        )
    )
    legacy = SpecVersion.objects.create(
        spec=IntegrationSpec.objects.create(
            account=tenant_a.account, spec_id="example-crm", name="Legacy", spec_class="crm"
        ),
        number=1,
        document=document,
        sha256=SpecVersion.digest(document),
        status=SpecVersion.Status.SUBMITTED,
    )
    client.force_login(UserFactory(is_staff=True))

    response = client.post(
        reverse("integrations:spec_review", args=[legacy.pk]), {"decision": "approve"}, follow=True
    )

    legacy.refresh_from_db()
    assert legacy.status == SpecVersion.Status.SUBMITTED
    assert "is the id of a built-in integration" in response.content.decode()
    assert "upload it again under another id" in response.content.decode()


def test_rejected_version_stays_out_of_the_catalog(client: Client, tenant_a: Tenant) -> None:
    client.force_login(tenant_a.reseller)
    _upload(client, bearer_crm_document("alpha-rejected-crm"))
    version = SpecVersion.objects.get(spec__spec_id="alpha-rejected-crm")
    client.force_login(UserFactory(is_staff=True))

    client.post(
        reverse("integrations:spec_review", args=[version.pk]),
        {"decision": "reject", "note": "Uses a private API"},
    )

    version.refresh_from_db()
    assert version.status == SpecVersion.Status.REJECTED
    assert version.review_note == "Uses a private API"
    client.force_login(tenant_a.reseller)
    assert "alpha-rejected-crm" not in _catalog_ids(client, tenant_a.org)


def test_django_admin_action_approves(tenant_a: Tenant) -> None:
    client = Client()
    client.force_login(tenant_a.reseller)
    _upload(client, bearer_crm_document("admin-approved-crm"))
    staff = UserFactory(is_staff=True, is_superuser=True)
    request = RequestFactory().post("/admin/")
    request.user = staff
    request._messages = _NoMessages()

    approve_versions(
        admin_site._registry[SpecVersion],
        request,
        SpecVersion.objects.filter(spec__spec_id="admin-approved-crm"),
    )

    assert SpecVersion.objects.get(spec__spec_id="admin-approved-crm").status == "approved"
    entries = catalog_for_organization(user=tenant_a.reseller, organization=tenant_a.org)
    assert "admin-approved-crm" in [e.spec.spec_id for e in entries]


class _NoMessages:
    def add(self, *args: Any, **kwargs: Any) -> None:
        pass


def test_another_accounts_spec_is_never_visible(
    client: Client, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    version = approved_version(bearer_crm_document("alpha-secret-crm"), account=tenant_a.account)
    client.force_login(tenant_b.reseller)

    assert (
        client.get(reverse("integrations:spec_detail", args=[version.spec_id])).status_code == 404
    )
    enable = reverse("integrations:installation_create", args=[tenant_b.org.pk, version.spec_id])
    assert client.get(enable).status_code == 404
    assert client.post(enable, {"prop_0": "https://x.example", "prop_1": "k"}).status_code == 404
    assert "alpha-secret-crm" not in _catalog_ids(client, tenant_b.org)
    assert "alpha-secret-crm" not in client.get(reverse("integrations:spec_list")).content.decode()

    client.force_login(tenant_a.org_admin)
    assert "alpha-secret-crm" in _catalog_ids(client, tenant_a.org)
    assert "alpha-secret-crm" in _catalog_ids(client, tenant_a.org)


def test_only_reseller_admins_upload(client: Client, tenant_a: Tenant) -> None:
    client.force_login(tenant_a.org_admin)

    assert client.get(reverse("integrations:spec_upload")).status_code == 403
    assert _upload(client, bearer_crm_document("org-admin-crm")).status_code == 403
    assert not IntegrationSpec.objects.filter(spec_id="org-admin-crm").exists()


def test_review_pages_are_staff_only(client: Client, tenant_a: Tenant) -> None:
    client.force_login(tenant_a.reseller)
    _upload(client, bearer_crm_document("self-approved-crm"))
    version = SpecVersion.objects.get(spec__spec_id="self-approved-crm")

    assert client.get(reverse("integrations:spec_review_list")).status_code == 404
    review = reverse("integrations:spec_review", args=[version.pk])
    assert client.post(review, {"decision": "approve"}).status_code == 404
    version.refresh_from_db()
    assert version.status == SpecVersion.Status.SUBMITTED


def test_a_new_upload_of_the_same_id_is_a_new_version(client: Client, tenant_a: Tenant) -> None:
    client.force_login(tenant_a.reseller)
    _upload(client, bearer_crm_document("versioned-crm"))
    _upload(client, bearer_crm_document("versioned-crm", name="Versioned CRM 2"))
    same_again = _upload(client, bearer_crm_document("versioned-crm", name="Versioned CRM 2"))

    assert list(
        SpecVersion.objects.filter(spec__spec_id="versioned-crm").values_list("number", flat=True)
    ) == [2, 1]
    assert "already uploaded" in same_again.content.decode()


def test_load_builtin_specs_command_is_idempotent() -> None:
    first, second = io.StringIO(), io.StringIO()

    call_command("load_builtin_specs", stdout=first)
    call_command("load_builtin_specs", stdout=second)

    assert "up to date" in second.getvalue()
    assert IntegrationSpec.objects.filter(account__isnull=True, spec_id="example-crm").exists()


def test_migrate_loads_the_builtin_specs() -> None:
    IntegrationSpec.objects.filter(account__isnull=True).delete()

    load_builtin_specs(sender=apps.get_app_config("integrations"), using="default")

    assert IntegrationSpec.objects.filter(account__isnull=True, spec_id="example-crm").exists()


def test_a_submitted_version_does_not_rename_the_spec_until_approved(db, tenant_a, admin_user):
    from integrations.models import IntegrationSpec
    from integrations.services import spec_upload, spec_version_review

    document = {
        "id": "acme-crm",
        "name": "Acme CRM",
        "class": "crm",
        "resource_url": "https://crm.acme.example/api",
        "API": {"FindContact": {"request_method": "GET", "request_path": "/contacts"}},
    }
    first = spec_upload(user=tenant_a.reseller, account=tenant_a.account, source=document)
    spec_version_review(reviewer=admin_user, version=first, approve=True)
    renamed = spec_upload(
        user=tenant_a.reseller, account=tenant_a.account, source={**document, "name": "Acme CRM 2"}
    )

    assert IntegrationSpec.objects.get(pk=first.spec_id).name == "Acme CRM"
    spec_version_review(reviewer=admin_user, version=renamed, approve=True)
    assert IntegrationSpec.objects.get(pk=first.spec_id).name == "Acme CRM 2"


def test_staff_without_membership_can_read_the_spec_they_review(
    client: Client, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    client.force_login(tenant_a.reseller)
    _upload(client, bearer_crm_document("reviewed-crm", name="Reviewed CRM"))
    version = SpecVersion.objects.get(spec__spec_id="reviewed-crm")
    staff = UserFactory(is_staff=True)
    assert not staff.memberships.exists()
    client.force_login(staff)

    review_page = client.get(reverse("integrations:spec_review_list")).content.decode()
    link = f"{reverse('integrations:spec_detail', args=[version.spec.pk])}?version=1"
    assert link in review_page
    response = client.get(link)

    assert response.status_code == 200
    page = response.content.decode()
    assert "Reviewed CRM" in page and "Submitted" in page
    assert "Spec document (v1)" in page and "/contacts/search" in page
    # Reseller users of another account still cannot see it.
    client.force_login(tenant_b.reseller)
    assert client.get(link).status_code == 404


def test_a_custom_spec_cannot_reuse_a_builtin_id(client: Client, tenant_a: Tenant) -> None:
    builtin_specs_sync()
    builtin = IntegrationSpec.objects.get(account__isnull=True, spec_id="example-sms")
    document = dict(builtin.latest_approved().document, name="My SMS")
    client.force_login(tenant_a.reseller)

    response = _upload(client, document)

    assert response.status_code == 200
    problems = response.context["problems"]
    assert [p["pointer"] for p in problems] == ["/id"]
    assert "example-sms" in problems[0]["message"] and "another id" in problems[0]["message"]
    assert "/id" in response.content.decode()
    assert list(IntegrationSpec.objects.filter(spec_id="example-sms")) == [builtin]


def test_an_accounts_own_id_is_a_new_version_and_other_accounts_ids_are_free(
    client: Client, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    client.force_login(tenant_b.reseller)
    assert _upload(client, bearer_crm_document("shared-name-crm")).status_code == 302
    client.force_login(tenant_a.reseller)

    first = _upload(client, bearer_crm_document("shared-name-crm"))
    second = _upload(client, bearer_crm_document("shared-name-crm", name="Renamed"))

    assert first.status_code == 302 and second.status_code == 302
    mine = IntegrationSpec.objects.get(spec_id="shared-name-crm", account=tenant_a.account)
    assert mine.versions.count() == 2
