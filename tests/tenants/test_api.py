"""REST API v1: organizations, PBX users and SMS numbers — happy paths, normalization,
uniqueness, the error shape and pagination. Isolation is in test_api_isolation.py."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from tenants.models import Organization, PbxUser, SmsNumber
from tests.factories import (
    AccountFactory,
    OrganizationFactory,
    PbxUserFactory,
    ResellerMembershipFactory,
    SmsNumberFactory,
)
from tests.tenants.conftest import Tenant


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _client_for(user: object) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def reseller(tenant_a: Tenant) -> APIClient:
    return _client_for(tenant_a.reseller)


@pytest.fixture
def org_admin(tenant_a: Tenant) -> APIClient:
    return _client_for(tenant_a.org_admin)


def _orgs_url() -> str:
    return reverse("api-v1:organization-list")


def _org_url(org: Organization) -> str:
    return reverse("api-v1:organization-detail", kwargs={"org_id": org.pk})


def _users_url(org: Organization) -> str:
    return reverse("api-v1:pbx-user-list", kwargs={"org_id": org.pk})


def _user_url(pbx_user: PbxUser) -> str:
    return reverse(
        "api-v1:pbx-user-detail",
        kwargs={"org_id": pbx_user.organization_id, "pbx_user_id": pbx_user.pk},
    )


def _numbers_url(org: Organization) -> str:
    return reverse("api-v1:sms-number-list", kwargs={"org_id": org.pk})


def _number_url(sms_number: SmsNumber) -> str:
    return reverse(
        "api-v1:sms-number-detail",
        kwargs={"org_id": sms_number.organization_id, "sms_number_id": sms_number.pk},
    )


# --- Organizations ---------------------------------------------------------------------------


def test_organization_output_has_the_webhook_key_but_never_the_secret(
    reseller: APIClient, tenant_a: Tenant
) -> None:
    secret = tenant_a.org.webhook_secret

    listed = reseller.get(_orgs_url())
    detail = reseller.get(_org_url(tenant_a.org))

    assert detail.status_code == 200
    body = detail.json()
    assert body["webhook_key"] == tenant_a.org.webhook_key
    assert body["account"] == tenant_a.account.pk
    assert body["account_name"] == tenant_a.account.name
    for response in (listed, detail):
        assert "webhook_secret" not in response.content.decode()
        assert secret not in response.content.decode()


def test_a_reseller_with_one_account_creates_an_org_without_naming_the_account(
    reseller: APIClient, tenant_a: Tenant
) -> None:
    response = reseller.post(
        _orgs_url(),
        {"name": "Gamma Clinic", "pbx_domain": "gamma.ringrx.com", "default_region": "gb"},
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["slug"] == "gamma-clinic"
    assert body["default_region"] == "GB"
    assert body["account"] == tenant_a.account.pk
    org = Organization.objects.get(pk=body["id"])
    assert org.account == tenant_a.account
    assert org.webhook_key == body["webhook_key"]
    # The only time the secret is shown: in the 201, never again.
    assert body["webhook_secret"] == org.webhook_secret
    assert response["Cache-Control"] == "no-store"
    assert org.webhook_secret not in reseller.get(_org_url(org)).content.decode()


def _rotate_url(org: Organization) -> str:
    return reverse("api-v1:organization-webhook-secret-rotate", kwargs={"org_id": org.pk})


def test_rotating_the_webhook_secret_returns_the_new_one_once(
    org_admin: APIClient, tenant_a: Tenant
) -> None:
    old = tenant_a.org.webhook_secret

    response = org_admin.post(_rotate_url(tenant_a.org))

    assert response.status_code == 200, response.content
    tenant_a.org.refresh_from_db()
    assert tenant_a.org.webhook_secret != old
    assert response.json() == {
        "webhook_key": tenant_a.org.webhook_key,
        "webhook_secret": tenant_a.org.webhook_secret,
    }
    assert response["Cache-Control"] == "no-store"
    assert org_admin.get(_rotate_url(tenant_a.org)).status_code == 405


def test_rotating_needs_the_write_scope(tenant_a: Tenant) -> None:
    from datetime import timedelta

    from django.utils import timezone
    from oauth2_provider.models import AccessToken

    token = AccessToken.objects.create(
        user=tenant_a.reseller,
        token="read-only-token-for-rotate",
        scope="read",
        expires=timezone.now() + timedelta(hours=1),
    )
    old = tenant_a.org.webhook_secret
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token.token}")

    response = client.post(_rotate_url(tenant_a.org))

    assert response.status_code == 403
    assert "write" in response.json()["message"]
    tenant_a.org.refresh_from_db()
    assert tenant_a.org.webhook_secret == old


def test_a_reseller_of_several_accounts_must_name_the_account(tenant_a: Tenant) -> None:
    second = AccountFactory(name="Second Reseller")
    ResellerMembershipFactory(user=tenant_a.reseller, account=second)
    client = _client_for(tenant_a.reseller)

    missing = client.post(_orgs_url(), {"name": "Where"}, format="json")
    named = client.post(_orgs_url(), {"name": "Here", "account": second.pk}, format="json")

    assert missing.status_code == 400
    assert list(missing.json()["errors"]) == ["account"]
    assert named.status_code == 201, named.content
    assert Organization.objects.get(pk=named.json()["id"]).account == second


def test_an_org_admin_cannot_create_organizations(org_admin: APIClient) -> None:
    response = org_admin.post(_orgs_url(), {"name": "Nope"}, format="json")

    assert response.status_code == 403
    assert response.json() == {
        "message": "Only reseller admins can create organizations.",
        "errors": {},
    }
    assert not Organization.objects.filter(name="Nope").exists()


def test_an_org_admin_updates_its_org_but_cannot_delete_it(
    org_admin: APIClient, tenant_a: Tenant
) -> None:
    patched = org_admin.patch(_org_url(tenant_a.org), {"name": "Alpha Dental Group"}, format="json")
    deleted = org_admin.delete(_org_url(tenant_a.org))

    assert patched.status_code == 200
    assert patched.json()["name"] == "Alpha Dental Group"
    assert deleted.status_code == 403
    assert "reseller admin" in deleted.json()["message"]
    assert Organization.objects.filter(pk=tenant_a.org.pk).exists()


def test_patch_changes_only_the_fields_sent_and_put_resets_the_rest(
    reseller: APIClient, tenant_a: Tenant
) -> None:
    org = OrganizationFactory(
        account=tenant_a.account, pbx_domain="keep.ringrx.com", default_region="GB"
    )

    patched = reseller.patch(_org_url(org), {"name": "Patched"}, format="json")
    assert patched.json()["pbx_domain"] == "keep.ringrx.com"
    assert patched.json()["default_region"] == "GB"

    put = reseller.put(_org_url(org), {"name": "Put"}, format="json")
    assert put.status_code == 200
    assert put.json()["pbx_domain"] == ""
    assert put.json()["default_region"] == "US"
    assert put.json()["slug"] == org.slug

    missing_name = reseller.put(_org_url(org), {"pbx_domain": "x.example.com"}, format="json")
    assert missing_name.status_code == 400
    assert list(missing_name.json()["errors"]) == ["name"]


def test_a_reseller_deletes_an_org(reseller: APIClient, tenant_a: Tenant) -> None:
    response = reseller.delete(_org_url(tenant_a.sibling_org))

    assert response.status_code == 204
    assert not Organization.objects.filter(pk=tenant_a.sibling_org.pk).exists()


def test_an_unknown_region_is_a_400_naming_default_region(reseller: APIClient) -> None:
    response = reseller.post(
        _orgs_url(), {"name": "Nowhere", "default_region": "XX"}, format="json"
    )

    assert response.status_code == 400
    assert response.json() == {
        "message": "Invalid input: default_region.",
        "errors": {"default_region": ["'XX' is not a known region code."]},
    }


def test_a_pbx_domain_that_is_not_a_host_name_is_a_400_naming_pbx_domain(
    reseller: APIClient, tenant_a: Tenant
) -> None:
    created = reseller.post(
        _orgs_url(), {"name": "Bad Domain", "pbx_domain": "https://bad domain/ x"}, format="json"
    )
    patched = reseller.patch(
        _org_url(tenant_a.org), {"pbx_domain": "customer.ringrx.com/path"}, format="json"
    )

    for response in (created, patched):
        assert response.status_code == 400, response.content
        body = response.json()
        assert list(body["errors"]) == ["pbx_domain"]
        assert "is not a host name" in body["errors"]["pbx_domain"][0]
    assert not Organization.objects.filter(name="Bad Domain").exists()
    tenant_a.org.refresh_from_db()
    assert "/" not in tenant_a.org.pbx_domain


def test_the_api_stores_a_pbx_domain_as_the_form_does(reseller: APIClient) -> None:
    response = reseller.post(
        _orgs_url(), {"name": "Gamma", "pbx_domain": " Gamma.RingRx.com. "}, format="json"
    )

    assert response.status_code == 201, response.content
    assert response.json()["pbx_domain"] == "gamma.ringrx.com"


def test_a_duplicate_slug_is_a_400_naming_slug(reseller: APIClient, tenant_a: Tenant) -> None:
    created = reseller.post(_orgs_url(), {"name": "Copy", "slug": tenant_a.org.slug}, format="json")
    renamed = reseller.patch(
        _org_url(tenant_a.sibling_org), {"slug": tenant_a.org.slug}, format="json"
    )

    for response in (created, renamed):
        assert response.status_code == 400
        assert list(response.json()["errors"]) == ["slug"]


def test_organization_search(reseller: APIClient, tenant_a: Tenant) -> None:
    response = reseller.get(_orgs_url(), {"search": "sibling"})

    assert [row["id"] for row in response.json()["results"]] == [tenant_a.sibling_org.pk]


def test_organization_list_is_paginated(reseller: APIClient, tenant_a: Tenant) -> None:
    for n in range(3):
        OrganizationFactory(account=tenant_a.account, name=f"Zulu {n}")

    first = reseller.get(_orgs_url(), {"page_size": 2}).json()
    last = reseller.get(_orgs_url(), {"page_size": 2, "page": 3}).json()

    assert first["count"] == 5
    assert len(first["results"]) == 2
    assert "page=2" in first["next"]
    assert first["previous"] is None
    assert last["next"] is None
    assert [row["name"] for row in last["results"]] == ["Zulu 2"]


def test_a_page_past_the_end_is_a_404_in_the_error_shape(reseller: APIClient) -> None:
    response = reseller.get(_orgs_url(), {"page": 99})

    assert response.status_code == 404
    assert set(response.json()) == {"message", "errors"}


# --- PBX users -------------------------------------------------------------------------------


def test_pbx_user_crud(org_admin: APIClient, tenant_a: Tenant) -> None:
    created = org_admin.post(
        _users_url(tenant_a.org),
        {
            "extension": " 205 ",
            "name": "Dana",
            "email": "dana@example.com",
            "mobile": "(415) 555-0123",
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["extension"] == "205"
    assert body["mobile"] == "+14155550123"
    assert body["organization"] == tenant_a.org.pk
    pbx_user = PbxUser.objects.get(pk=body["id"])

    assert org_admin.get(_user_url(pbx_user)).json() == body

    patched = org_admin.patch(_user_url(pbx_user), {"name": "Dana S."}, format="json")
    assert patched.status_code == 200
    assert patched.json()["name"] == "Dana S."
    assert patched.json()["mobile"] == "+14155550123"

    put = org_admin.put(_user_url(pbx_user), {"extension": "206", "name": "Dana"}, format="json")
    assert put.status_code == 200
    assert (put.json()["extension"], put.json()["email"], put.json()["mobile"]) == ("206", "", "")

    deleted = org_admin.delete(_user_url(pbx_user))
    assert deleted.status_code == 204
    assert not PbxUser.objects.filter(pk=pbx_user.pk).exists()


def test_a_gb_org_reads_national_mobile_numbers_in_its_region(reseller: APIClient) -> None:
    org = Organization.objects.get(
        pk=reseller.post(
            _orgs_url(), {"name": "London Dental", "default_region": "GB"}, format="json"
        ).json()["id"]
    )

    response = reseller.post(
        _users_url(org),
        {"extension": "100", "name": "Ada", "mobile": "020 7946 0018"},
        format="json",
    )

    assert response.json()["mobile"] == "+442079460018"


def test_a_duplicate_extension_is_a_400_naming_extension(
    reseller: APIClient, tenant_a: Tenant
) -> None:
    other = PbxUserFactory(organization=tenant_a.org, extension="300")

    created = reseller.post(
        _users_url(tenant_a.org),
        {"extension": tenant_a.pbx_user.extension, "name": "Twin"},
        format="json",
    )
    changed = reseller.patch(
        _user_url(other), {"extension": tenant_a.pbx_user.extension}, format="json"
    )
    other_org = reseller.post(
        _users_url(tenant_a.sibling_org),
        {"extension": tenant_a.pbx_user.extension, "name": "Same extension, other org"},
        format="json",
    )

    for response in (created, changed):
        assert response.status_code == 400
        assert response.json() == {
            "message": "Invalid input: extension.",
            "errors": {
                "extension": [
                    f"Extension {tenant_a.pbx_user.extension} is already used in this organization."
                ]
            },
        }
    assert other_org.status_code == 201


def test_a_duplicate_extension_lost_in_a_race_is_still_a_400_naming_extension(
    reseller: APIClient, tenant_a: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both requests pass validation; the database constraint refuses the second insert."""
    monkeypatch.setattr(PbxUser, "validate_constraints", lambda self, exclude=None: None)

    response = reseller.post(
        _users_url(tenant_a.org),
        {"extension": tenant_a.pbx_user.extension, "name": "Racer"},
        format="json",
    )

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["extension"]
    # The connection is still usable after the refused insert (a savepoint rolled back).
    assert reseller.get(_users_url(tenant_a.org)).status_code == 200


def test_an_invalid_extension_and_email_are_reported_together(
    reseller: APIClient, tenant_a: Tenant
) -> None:
    response = reseller.post(
        _users_url(tenant_a.org), {"extension": "", "name": "X", "email": "nope"}, format="json"
    )

    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"extension", "email"}


def test_pbx_user_list_is_paginated_and_searchable(reseller: APIClient, tenant_a: Tenant) -> None:
    for n in range(4):
        PbxUserFactory(organization=tenant_a.org, extension=f"40{n}", name=f"Searchable {n}")

    page = reseller.get(_users_url(tenant_a.org), {"page_size": 2}).json()
    found = reseller.get(_users_url(tenant_a.org), {"search": "searchable"}).json()
    by_extension = reseller.get(_users_url(tenant_a.org), {"search": "402"}).json()

    assert page["count"] == 5
    assert len(page["results"]) == 2
    assert page["next"]
    assert found["count"] == 4
    assert [row["extension"] for row in by_extension["results"]] == ["402"]


# --- SMS numbers -----------------------------------------------------------------------------


def test_sms_number_in_national_format_is_stored_e164(
    reseller: APIClient, tenant_a: Tenant
) -> None:
    response = reseller.post(
        _numbers_url(tenant_a.org),
        {"number": "(415) 555-0123", "label": "Front desk", "users": [tenant_a.pbx_user.pk]},
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["number"] == "+14155550123"
    assert body["users"] == [tenant_a.pbx_user.pk]
    assert body["organization"] == tenant_a.org.pk
    sms_number = SmsNumber.objects.get(pk=body["id"])
    assert sms_number.account == tenant_a.account
    assert list(sms_number.users.all()) == [tenant_a.pbx_user]


def test_a_gb_org_reads_a_national_sms_number_as_gb(reseller: APIClient, tenant_a: Tenant) -> None:
    london = OrganizationFactory(account=tenant_a.account, default_region="GB")

    response = reseller.post(_numbers_url(london), {"number": "020 7946 0018"}, format="json")

    assert response.status_code == 201
    assert response.json()["number"] == "+442079460018"


def test_a_number_that_is_not_a_phone_number_is_a_400_naming_number(
    reseller: APIClient, tenant_a: Tenant
) -> None:
    response = reseller.post(_numbers_url(tenant_a.org), {"number": "abc"}, format="json")

    assert response.status_code == 400
    body = response.json()
    assert body["message"] == "Invalid input: number."
    assert list(body["errors"]) == ["number"]
    assert body["errors"]["number"][0].startswith("'abc' is not a phone number")


def test_a_local_only_number_is_a_400_naming_number_and_the_missing_area_code(
    reseller: APIClient, tenant_a: Tenant
) -> None:
    response = reseller.post(_numbers_url(tenant_a.org), {"number": "555-0100"}, format="json")
    mobile = reseller.post(
        _users_url(tenant_a.org),
        {"extension": "190", "name": "Local", "mobile": "0000000"},
        format="json",
    )

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["number"]
    assert "missing area code" in response.json()["errors"]["number"][0]
    assert mobile.status_code == 400
    assert "missing area code" in mobile.json()["errors"]["mobile"][0]
    assert not SmsNumber.objects.filter(number="+15550100").exists()


def test_a_duplicate_number_in_another_format_is_a_400_naming_number(
    reseller: APIClient, tenant_a: Tenant
) -> None:
    SmsNumberFactory(organization=tenant_a.sibling_org, number="+14155550123")

    response = reseller.post(_numbers_url(tenant_a.org), {"number": "415-555-0123"}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"] == {
        "number": ["+14155550123 is already used in this account."]
    }


def test_a_duplicate_number_lost_in_a_race_is_still_a_400_naming_number(
    reseller: APIClient, tenant_a: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validation passed (the other insert had not committed yet); the constraint refuses."""

    def clean_without_duplicate_check(self: SmsNumber) -> None:
        self.account_id = self.organization.account_id

    monkeypatch.setattr(SmsNumber, "clean", clean_without_duplicate_check)
    monkeypatch.setattr(SmsNumber, "validate_constraints", lambda self, exclude=None: None)

    response = reseller.post(
        _numbers_url(tenant_a.org), {"number": tenant_a.sms_number.number}, format="json"
    )

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["number"]
    assert SmsNumber.objects.filter(number=tenant_a.sms_number.number).count() == 1


def test_sms_number_update_and_delete(org_admin: APIClient, tenant_a: Tenant) -> None:
    sms_number = tenant_a.sms_number
    second_user = PbxUserFactory(organization=tenant_a.org)

    patched = org_admin.patch(
        _number_url(sms_number),
        {"label": "Sales", "users": [tenant_a.pbx_user.pk, second_user.pk]},
        format="json",
    )
    assert patched.status_code == 200, patched.content
    assert patched.json()["label"] == "Sales"
    assert patched.json()["number"] == sms_number.number
    assert sorted(patched.json()["users"]) == sorted([tenant_a.pbx_user.pk, second_user.pk])

    renumbered = org_admin.patch(
        _number_url(sms_number), {"number": "1 415 555 0177"}, format="json"
    )
    assert renumbered.json()["number"] == "+14155550177"
    assert len(renumbered.json()["users"]) == 2

    put = org_admin.put(_number_url(sms_number), {"number": "+14155550178"}, format="json")
    assert put.status_code == 200
    assert (put.json()["label"], put.json()["users"]) == ("", [])

    assert org_admin.get(_number_url(sms_number)).json() == put.json()

    deleted = org_admin.delete(_number_url(sms_number))
    assert deleted.status_code == 204
    assert not SmsNumber.objects.filter(pk=sms_number.pk).exists()


def test_sms_number_list_is_paginated(reseller: APIClient, tenant_a: Tenant) -> None:
    for n in range(3):
        SmsNumberFactory(organization=tenant_a.org, number=f"+1415555017{n}")

    page = reseller.get(_numbers_url(tenant_a.org), {"page_size": 3}).json()

    assert page["count"] == 4
    assert len(page["results"]) == 3
    assert page["next"]
    assert set(page["results"][0]) == {
        "id",
        "organization",
        "number",
        "label",
        "users",
        "created_at",
    }


def test_a_users_field_that_is_not_a_list_is_a_400_naming_users(
    reseller: APIClient, tenant_a: Tenant
) -> None:
    response = reseller.post(
        _numbers_url(tenant_a.org), {"number": "+14155550190", "users": "everyone"}, format="json"
    )

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["users"]


def test_malformed_json_is_a_400_in_the_error_shape(reseller: APIClient, tenant_a: Tenant) -> None:
    response = reseller.post(
        _numbers_url(tenant_a.org), "{not json", content_type="application/json"
    )

    assert response.status_code == 400
    assert set(response.json()) == {"message", "errors"}
    assert "JSON" in response.json()["message"]
