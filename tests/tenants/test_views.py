"""The tenant web UI: what a reseller or an organization admin does with it."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from tenants.models import Organization, PbxUser, SmsNumber
from tests.factories import (
    AccountFactory,
    OrganizationFactory,
    PbxUserFactory,
    ResellerMembershipFactory,
)
from tests.tenants.conftest import Tenant

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery"


@pytest.fixture
def reseller_client(client: Client, tenant_a: Tenant) -> Client:
    client.force_login(tenant_a.reseller)
    return client


@pytest.fixture
def org_admin_client(client: Client, tenant_a: Tenant) -> Client:
    client.force_login(tenant_a.org_admin)
    return client


def _csv(text: str) -> SimpleUploadedFile:
    return SimpleUploadedFile("users.csv", text.encode(), content_type="text/csv")


def _page(response) -> str:
    return response.content.decode()


# --- Login, logout, dashboard ---------------------------------------------------------------


def test_login_with_password_lands_on_dashboard(client: Client, tenant_a: Tenant) -> None:
    response = client.post(
        reverse("login"), {"username": "alpha-reseller", "password": PASSWORD}, follow=True
    )

    assert response.redirect_chain[-1][0] == reverse("dashboard")
    assert "Dashboard" in _page(response)
    assert response.context["user"] == tenant_a.reseller


def test_login_with_wrong_password_shows_an_error(client: Client, tenant_a: Tenant) -> None:
    response = client.post(reverse("login"), {"username": "alpha-reseller", "password": "nope"})

    assert response.status_code == 200
    assert "correct username and password" in _page(response)
    assert not response.context["user"].is_authenticated


def test_logout_is_a_post_that_ends_the_session(reseller_client: Client) -> None:
    response = reseller_client.post(reverse("logout"))

    assert response.status_code == 302
    assert response["Location"] == reverse("login")
    assert reseller_client.get(reverse("dashboard")).status_code == 302


def test_logout_form_is_rendered_as_a_post_with_csrf(reseller_client: Client) -> None:
    page = _page(reseller_client.get(reverse("dashboard")))

    assert f'<form method="post" action="{reverse("logout")}"' in page
    assert "csrfmiddlewaretoken" in page


def test_dashboard_counts_only_what_the_user_can_see(
    reseller_client: Client, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    response = reseller_client.get(reverse("dashboard"))

    # Tenant A: org + sibling, one PBX user and one SMS number in each.
    assert response.context["counts"] == {"organizations": 2, "pbx_users": 2, "sms_numbers": 2}
    assert tenant_a.org.name in _page(response)
    assert tenant_b.org.name not in _page(response)


def test_org_admin_dashboard_counts_their_org_only(
    org_admin_client: Client, tenant_a: Tenant
) -> None:
    response = org_admin_client.get(reverse("dashboard"))

    assert response.context["counts"] == {"organizations": 1, "pbx_users": 1, "sms_numbers": 1}
    assert "New organization" not in _page(response)


def test_staff_see_the_django_admin_link(client: Client, tenant_a: Tenant) -> None:
    tenant_a.reseller.is_staff = True
    tenant_a.reseller.save()
    client.force_login(tenant_a.reseller)

    assert reverse("admin:index") in _page(client.get(reverse("dashboard")))


def test_non_staff_do_not_see_the_django_admin_link(reseller_client: Client) -> None:
    assert reverse("admin:index") not in _page(reseller_client.get(reverse("dashboard")))


# --- Organizations --------------------------------------------------------------------------


def test_reseller_creates_an_organization(reseller_client: Client, tenant_a: Tenant) -> None:
    response = reseller_client.post(
        reverse("organization_create"),
        {"name": "Bayview Clinic", "pbx_domain": "Bayview.RingRx.com", "default_region": "GB"},
        follow=True,
    )

    org = Organization.objects.get(name="Bayview Clinic")
    assert org.account == tenant_a.account
    assert org.pbx_domain == "bayview.ringrx.com"
    assert org.default_region == "GB"
    assert org.slug == "bayview-clinic"
    assert response.redirect_chain[-1][0] == (
        reverse("organization_detail", args=[org.pk]) + "?tab=webhooks"
    )
    assert "Organization Bayview Clinic created." in _page(response)


def test_a_new_organizations_webhook_secret_is_shown_once_on_the_next_page(
    reseller_client: Client, tenant_a: Tenant
) -> None:
    response = reseller_client.post(
        reverse("organization_create"), {"name": "Harbor Dental", "default_region": "US"}
    )
    org = Organization.objects.get(name="Harbor Dental")
    assert org.webhook_secret not in _page(response)

    shown = reseller_client.get(response["Location"])

    page = _page(shown)
    assert f'data-testid="new-webhook-secret-value">{org.webhook_secret}</code>' in page
    assert "copy it now, it will not be shown again" in page
    assert 'data-copy-target="new-webhook-secret-value"' in page
    assert shown["Cache-Control"] == "no-store"
    for tab in ("webhooks", "users"):
        again = reseller_client.get(reverse("organization_detail", args=[org.pk]), {"tab": tab})
        assert org.webhook_secret not in _page(again)


def test_a_pending_secret_is_not_shown_on_another_organizations_page(
    reseller_client: Client, tenant_a: Tenant
) -> None:
    response = reseller_client.post(
        reverse("organization_create"), {"name": "Harbor Dental", "default_region": "US"}
    )
    org = Organization.objects.get(name="Harbor Dental")

    other = reseller_client.get(reverse("organization_detail", args=[tenant_a.org.pk]))
    own = reseller_client.get(response["Location"])

    assert org.webhook_secret not in _page(other)
    assert org.webhook_secret in _page(own)


def test_create_organization_shows_field_errors(reseller_client: Client) -> None:
    response = reseller_client.post(
        reverse("organization_create"),
        {"name": "", "pbx_domain": "https://bad domain/", "default_region": "XX"},
    )

    assert response.status_code == 200
    errors = response.context["form"].errors
    assert set(errors) == {"name", "pbx_domain", "default_region"}
    assert "field-error" in _page(response)
    assert not Organization.objects.filter(pbx_domain__contains="bad").exists()


def test_account_choice_appears_only_for_resellers_of_several_accounts(
    client: Client, tenant_a: Tenant
) -> None:
    client.force_login(tenant_a.reseller)
    assert "account" not in client.get(reverse("organization_create")).context["form"].fields

    other = AccountFactory(name="Second Reseller")
    ResellerMembershipFactory(user=tenant_a.reseller, account=other)
    form = client.get(reverse("organization_create")).context["form"]
    assert set(form.fields["account"].queryset) == {tenant_a.account, other}

    client.post(
        reverse("organization_create"),
        {"name": "Second Org", "default_region": "US", "account": other.pk},
    )
    assert Organization.objects.get(name="Second Org").account == other


def test_account_choice_refuses_an_account_the_reseller_does_not_manage(
    client: Client, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    ResellerMembershipFactory(user=tenant_a.reseller, account=AccountFactory())
    client.force_login(tenant_a.reseller)

    response = client.post(
        reverse("organization_create"),
        {"name": "Smuggled", "default_region": "US", "account": tenant_b.account.pk},
    )

    assert "account" in response.context["form"].errors
    assert not Organization.objects.filter(name="Smuggled").exists()


def test_org_admin_cannot_create_organizations(org_admin_client: Client, tenant_a: Tenant) -> None:
    assert org_admin_client.get(reverse("organization_create")).status_code == 403
    response = org_admin_client.post(
        reverse("organization_create"), {"name": "Nope", "default_region": "US"}
    )
    assert response.status_code == 403
    assert not Organization.objects.filter(name="Nope").exists()
    assert "New organization" not in _page(org_admin_client.get(reverse("organization_list")))


def test_edit_organization(reseller_client: Client, tenant_a: Tenant) -> None:
    url = reverse("organization_edit", args=[tenant_a.org.pk])
    assert reseller_client.get(url).context["form"].initial["name"] == "Alpha Dental"

    response = reseller_client.post(
        url, {"name": "Alpha Dental Group", "pbx_domain": "", "default_region": "CA"}
    )

    assert response.status_code == 302
    tenant_a.org.refresh_from_db()
    assert (tenant_a.org.name, tenant_a.org.pbx_domain, tenant_a.org.default_region) == (
        "Alpha Dental Group",
        "",
        "CA",
    )


def test_delete_organization_asks_for_confirmation_then_deletes_on_post(
    reseller_client: Client, tenant_a: Tenant
) -> None:
    url = reverse("organization_delete", args=[tenant_a.org.pk])

    confirm = reseller_client.get(url)
    assert confirm.status_code == 200
    assert "This cannot be undone" in _page(confirm)
    assert Organization.objects.filter(pk=tenant_a.org.pk).exists()

    response = reseller_client.post(url, follow=True)
    assert not Organization.objects.filter(pk=tenant_a.org.pk).exists()
    assert "Organization Alpha Dental deleted." in _page(response)


def test_org_admin_cannot_delete_their_organization(
    org_admin_client: Client, tenant_a: Tenant
) -> None:
    url = reverse("organization_delete", args=[tenant_a.org.pk])

    assert org_admin_client.get(url).status_code == 403
    assert org_admin_client.post(url).status_code == 403
    assert Organization.objects.filter(pk=tenant_a.org.pk).exists()


def test_organization_list_search_matches_name_slug_and_domain(
    reseller_client: Client, tenant_a: Tenant
) -> None:
    OrganizationFactory(account=tenant_a.account, name="Zephyr Ltd", slug="zephyr")
    OrganizationFactory(account=tenant_a.account, name="Other", slug="blue-fin")
    OrganizationFactory(account=tenant_a.account, name="Third", pbx_domain="acme.pbx.example")

    def names(query: str) -> list[str]:
        response = reseller_client.get(reverse("organization_list"), {"q": query})
        return [org.name for org in response.context["page"].object_list]

    assert names("zeph") == ["Zephyr Ltd"]
    assert names("blue-f") == ["Other"]
    assert names("acme.pbx") == ["Third"]
    response = reseller_client.get(reverse("organization_list"), {"q": "nothing-like-this"})
    assert "No organization matches" in _page(response)


def test_organization_list_paginates_twenty_per_page(
    reseller_client: Client, tenant_a: Tenant
) -> None:
    for n in range(23):
        OrganizationFactory(account=tenant_a.account, name=f"Paged {n:02d}")

    first = reseller_client.get(reverse("organization_list"), {"q": "Paged"})
    second = reseller_client.get(reverse("organization_list"), {"q": "Paged", "page": 2})

    assert len(first.context["page"].object_list) == 20
    assert [o.name for o in second.context["page"].object_list] == [
        "Paged 20",
        "Paged 21",
        "Paged 22",
    ]
    assert "q=Paged&amp;page=2" in _page(first)
    assert "Page 2 of 2" in _page(second)


def test_organization_list_shows_counts(reseller_client: Client, tenant_a: Tenant) -> None:
    PbxUserFactory(organization=tenant_a.org)

    response = reseller_client.get(reverse("organization_list"))

    org = next(o for o in response.context["page"].object_list if o.pk == tenant_a.org.pk)
    assert (org.pbx_user_count, org.sms_number_count) == (2, 1)


def test_organization_list_empty_state_invites_reseller_to_create(client: Client) -> None:
    membership = ResellerMembershipFactory()
    client.force_login(membership.user)

    page = _page(client.get(reverse("organization_list")))

    assert "No organizations yet" in page
    assert reverse("organization_create") in page


def test_organization_page_shows_webhook_key_and_url_but_never_the_secret(
    reseller_client: Client, tenant_a: Tenant
) -> None:
    response = reseller_client.get(
        reverse("organization_detail", args=[tenant_a.org.pk]), {"tab": "webhooks"}
    )

    page = _page(response)
    assert tenant_a.org.webhook_key in page
    assert f"/api/v1/hooks/pbx/{tenant_a.org.webhook_key}/&lt;event&gt;" in page
    assert tenant_a.org.webhook_secret not in page


def test_rotate_webhook_secret_shows_the_new_secret_once(
    reseller_client: Client, tenant_a: Tenant
) -> None:
    old_secret = tenant_a.org.webhook_secret
    url = reverse("organization_rotate_webhook_secret", args=[tenant_a.org.pk])

    assert reseller_client.get(url).status_code == 405
    response = reseller_client.post(url, follow=True)

    tenant_a.org.refresh_from_db()
    assert tenant_a.org.webhook_secret != old_secret
    assert tenant_a.org.webhook_secret in _page(response)
    assert "it will not be shown again" in _page(response)
    again = reseller_client.get(
        reverse("organization_detail", args=[tenant_a.org.pk]), {"tab": "webhooks"}
    )
    assert tenant_a.org.webhook_secret not in _page(again)


# --- PBX users ------------------------------------------------------------------------------


def test_add_pbx_user_normalizes_the_mobile(org_admin_client: Client, tenant_a: Tenant) -> None:
    response = org_admin_client.post(
        reverse("pbx_user_create", args=[tenant_a.org.pk]),
        {"extension": "201", "name": "Dana Scully", "email": "", "mobile": "(415) 555-0142"},
        follow=True,
    )

    pbx_user = PbxUser.objects.get(organization=tenant_a.org, extension="201")
    assert (pbx_user.name, pbx_user.mobile) == ("Dana Scully", "+14155550142")
    assert "PBX user 201 Dana Scully added." in _page(response)
    assert "Dana Scully" in _page(response)


def test_duplicate_extension_error_is_shown_on_the_extension_field(
    org_admin_client: Client, tenant_a: Tenant
) -> None:
    response = org_admin_client.post(
        reverse("pbx_user_create", args=[tenant_a.org.pk]),
        {"extension": tenant_a.pbx_user.extension, "name": "Twin"},
    )

    assert response.status_code == 200
    assert response.context["form"].errors["extension"] == [
        f"Extension {tenant_a.pbx_user.extension} is already used in this organization."
    ]
    assert "already used in this organization" in _page(response)
    assert PbxUser.objects.filter(organization=tenant_a.org).count() == 1


def test_edit_pbx_user(org_admin_client: Client, tenant_a: Tenant) -> None:
    url = reverse("pbx_user_edit", args=[tenant_a.org.pk, tenant_a.pbx_user.pk])

    response = org_admin_client.post(
        url, {"extension": "555", "name": "Renamed", "email": "r@example.com", "mobile": ""}
    )

    assert response.status_code == 302
    tenant_a.pbx_user.refresh_from_db()
    assert (tenant_a.pbx_user.extension, tenant_a.pbx_user.name) == ("555", "Renamed")


def test_edit_pbx_user_with_bad_mobile_names_the_field(
    org_admin_client: Client, tenant_a: Tenant
) -> None:
    url = reverse("pbx_user_edit", args=[tenant_a.org.pk, tenant_a.pbx_user.pk])

    response = org_admin_client.post(url, {"extension": "100", "name": "X", "mobile": "hello"})

    assert "mobile" in response.context["form"].errors


def test_delete_pbx_user_confirms_then_deletes(org_admin_client: Client, tenant_a: Tenant) -> None:
    url = reverse("pbx_user_delete", args=[tenant_a.org.pk, tenant_a.pbx_user.pk])

    assert "This cannot be undone" in _page(org_admin_client.get(url))
    assert PbxUser.objects.filter(pk=tenant_a.pbx_user.pk).exists()

    org_admin_client.post(url)
    assert not PbxUser.objects.filter(pk=tenant_a.pbx_user.pk).exists()


def test_pbx_user_search_on_the_organization_page(
    org_admin_client: Client, tenant_a: Tenant
) -> None:
    PbxUserFactory(organization=tenant_a.org, extension="777", name="Fox Mulder")

    response = org_admin_client.get(
        reverse("organization_detail", args=[tenant_a.org.pk]), {"q": "mulder"}
    )

    assert [u.name for u in response.context["pbx_user_page"].object_list] == ["Fox Mulder"]


# --- CSV import -----------------------------------------------------------------------------


def test_csv_import_all_valid_rows_imports_at_once(
    org_admin_client: Client, tenant_a: Tenant
) -> None:
    existing = tenant_a.pbx_user.extension
    text = (
        "extension,name,email,mobile\n"
        f"{existing},Updated Name,,\n"
        "301,New One,one@example.com,(415) 555-0131\n"
        "302,New Two,,\n"
    )

    response = org_admin_client.post(
        reverse("pbx_users_import", args=[tenant_a.org.pk]), {"file": _csv(text)}, follow=True
    )

    assert "Imported PBX users: 2 created, 1 updated." in _page(response)
    assert PbxUser.objects.get(organization=tenant_a.org, extension="301").mobile == (
        "+14155550131"
    )
    tenant_a.pbx_user.refresh_from_db()
    assert tenant_a.pbx_user.name == "Updated Name"


def test_csv_with_a_bad_row_reports_the_line_and_imports_nothing(
    org_admin_client: Client, tenant_a: Tenant
) -> None:
    text = (
        "extension,name,email,mobile\n"
        "401,Good One,,\n"
        "abc,Bad Extension,,\n"
        "402,Good Two,,\n"
        "403,Bad Mobile,,not-a-number\n"
    )

    response = org_admin_client.post(
        reverse("pbx_users_import", args=[tenant_a.org.pk]), {"file": _csv(text)}
    )

    page = _page(response)
    assert response.status_code == 200
    assert "line 3" in page and "extension" in page
    assert "line 5" in page and "mobile" in page
    assert [e.line for e in response.context["result"].errors] == [3, 5]
    assert "Import the 2 valid rows" in page
    assert 'name="import_valid_rows"' in page
    assert 'name="csv_text"' in page
    assert not PbxUser.objects.filter(extension__in=["401", "402"]).exists()


def test_confirmed_csv_import_imports_only_the_valid_rows(
    org_admin_client: Client, tenant_a: Tenant
) -> None:
    text = "extension,name,email,mobile\n401,Good One,,\nabc,Bad,,\n402,Good Two,,\n"
    url = reverse("pbx_users_import", args=[tenant_a.org.pk])
    first = org_admin_client.post(url, {"file": _csv(text)})
    confirm = first.context["confirm_form"]

    response = org_admin_client.post(
        url,
        {"csv_text": confirm.initial["csv_text"], "import_valid_rows": "True"},
        follow=True,
    )

    assert "Imported PBX users: 2 created, 0 updated, 1 bad row(s) skipped." in _page(response)
    assert set(
        PbxUser.objects.filter(organization=tenant_a.org).values_list("extension", flat=True)
    ) == {tenant_a.pbx_user.extension, "401", "402"}


def test_csv_without_the_required_header_is_reported(
    org_admin_client: Client, tenant_a: Tenant
) -> None:
    response = org_admin_client.post(
        reverse("pbx_users_import", args=[tenant_a.org.pk]),
        {"file": _csv("ext,full name\n1,A\n")},
    )

    assert "missing column(s) extension, name" in _page(response)
    assert response.context["confirm_form"] is None


def test_csv_import_refuses_a_file_that_is_not_utf8(
    org_admin_client: Client, tenant_a: Tenant
) -> None:
    upload = SimpleUploadedFile("users.csv", b"extension,name\n1,\xff\xfe\n")

    response = org_admin_client.post(
        reverse("pbx_users_import", args=[tenant_a.org.pk]), {"file": upload}
    )

    assert "not UTF-8" in response.context["form"].errors["file"][0]


def test_sample_csv_download(org_admin_client: Client, tenant_a: Tenant) -> None:
    response = org_admin_client.get(reverse("pbx_users_sample_csv", args=[tenant_a.org.pk]))

    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    assert response.content.decode().startswith("extension,name,email,mobile\n")


# --- SMS numbers ----------------------------------------------------------------------------


def test_add_sms_number_in_national_format_is_stored_in_e164(
    org_admin_client: Client, tenant_a: Tenant
) -> None:
    response = org_admin_client.post(
        reverse("sms_number_create", args=[tenant_a.org.pk]),
        {"number": "(415) 555-0123", "label": "Front desk", "users": [tenant_a.pbx_user.pk]},
        follow=True,
    )

    sms_number = SmsNumber.objects.get(number="+14155550123")
    assert sms_number.organization == tenant_a.org
    assert list(sms_number.users.all()) == [tenant_a.pbx_user]
    assert "SMS number +14155550123 added." in _page(response)


def test_unparseable_sms_number_error_names_the_number_field(
    org_admin_client: Client, tenant_a: Tenant
) -> None:
    response = org_admin_client.post(
        reverse("sms_number_create", args=[tenant_a.org.pk]), {"number": "call me maybe"}
    )

    errors = response.context["form"].errors
    assert list(errors) == ["number"]
    assert "is not a phone number" in errors["number"][0]
    assert 'id="id_number_error"' in _page(response)


def test_duplicate_sms_number_in_the_account_is_refused(
    org_admin_client: Client, tenant_a: Tenant
) -> None:
    response = org_admin_client.post(
        reverse("sms_number_create", args=[tenant_a.org.pk]), {"number": tenant_a.sms_number.number}
    )

    assert "already used in this account" in response.context["form"].errors["number"][0]


def test_edit_sms_number(org_admin_client: Client, tenant_a: Tenant) -> None:
    url = reverse("sms_number_edit", args=[tenant_a.org.pk, tenant_a.sms_number.pk])

    org_admin_client.post(url, {"number": "415.555.0177", "label": "Support"})

    tenant_a.sms_number.refresh_from_db()
    assert (tenant_a.sms_number.number, tenant_a.sms_number.label) == ("+14155550177", "Support")


def test_assign_sms_number_to_users(org_admin_client: Client, tenant_a: Tenant) -> None:
    second = PbxUserFactory(organization=tenant_a.org)
    url = reverse("sms_number_assign", args=[tenant_a.org.pk, tenant_a.sms_number.pk])

    form = org_admin_client.get(url).context["form"]
    assert set(form.fields["users"].queryset) == {tenant_a.pbx_user, second}

    response = org_admin_client.post(url, {"users": [tenant_a.pbx_user.pk, second.pk]})
    assert response.status_code == 302
    assert set(tenant_a.sms_number.users.all()) == {tenant_a.pbx_user, second}

    org_admin_client.post(url, {})
    assert not tenant_a.sms_number.users.exists()


def test_assign_refuses_a_pbx_user_of_another_organization(
    reseller_client: Client, tenant_a: Tenant
) -> None:
    sibling_user = PbxUser.objects.filter(organization=tenant_a.sibling_org).first()
    url = reverse("sms_number_assign", args=[tenant_a.org.pk, tenant_a.sms_number.pk])

    response = reseller_client.post(url, {"users": [sibling_user.pk]})

    assert "users" in response.context["form"].errors
    assert not tenant_a.sms_number.users.exists()


def test_delete_sms_number_confirms_then_deletes(
    org_admin_client: Client, tenant_a: Tenant
) -> None:
    url = reverse("sms_number_delete", args=[tenant_a.org.pk, tenant_a.sms_number.pk])

    assert "This cannot be undone" in _page(org_admin_client.get(url))
    org_admin_client.post(url)

    assert not SmsNumber.objects.filter(pk=tenant_a.sms_number.pk).exists()


def test_sms_numbers_tab_lists_numbers_with_their_users(
    org_admin_client: Client, tenant_a: Tenant
) -> None:
    tenant_a.sms_number.users.add(tenant_a.pbx_user)

    page = _page(
        org_admin_client.get(
            reverse("organization_detail", args=[tenant_a.org.pk]), {"tab": "numbers"}
        )
    )

    assert tenant_a.sms_number.number in page
    assert tenant_a.pbx_user.name in page
