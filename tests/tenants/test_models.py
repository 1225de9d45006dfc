from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError

from tenants.models import Organization, PbxUser, SmsNumber
from tenants.phones import phone_to_e164
from tenants.services import pbx_user_create, sms_number_assign, sms_number_create
from tests.factories import OrganizationFactory, PbxUserFactory, SmsNumberFactory


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("(415) 555-0123", "US", "+14155550123"),
        ("415.555.0123", "US", "+14155550123"),
        ("+1 415 555 0123", "GB", "+14155550123"),
        ("020 7946 0018", "GB", "+442079460018"),
        ("0412 345 678", "AU", "+61412345678"),
    ],
)
def test_numbers_are_normalized_to_e164_in_the_org_region(raw, region, expected):
    assert phone_to_e164(raw, region=region) == expected


@pytest.mark.parametrize("raw", ["", "abc", "12", "+999 123"])
def test_an_unparseable_number_is_an_error_naming_the_field(raw):
    with pytest.raises(ValidationError) as excinfo:
        phone_to_e164(raw, region="US", field="mobile")
    assert "mobile" in excinfo.value.message_dict


@pytest.mark.parametrize(
    ("raw", "region", "why"),
    [
        ("555-0100", "US", "missing area code"),
        ("0000000", "US", "missing area code"),
        ("7946 0018", "GB", "missing area code"),
        ("+1415555017", "US", "too few digits"),
        ("+1 415 555 01234", "US", "too many digits"),
    ],
)
def test_a_local_only_or_incomplete_number_is_refused_not_stored_as_e164(raw, region, why):
    """`555-0100` used to be stored as +15550100, which no one can call."""
    with pytest.raises(ValidationError) as excinfo:
        phone_to_e164(raw, region=region, field="mobile")

    [message] = excinfo.value.message_dict["mobile"]
    assert f"'{raw}' is not a complete phone number ({why})" in message
    assert "+14155550100" in message  # says what to enter instead


def test_a_pbx_users_local_only_mobile_is_an_error_on_the_mobile_field(db):
    with pytest.raises(ValidationError) as excinfo:
        pbx_user_create(
            organization=OrganizationFactory(), extension="101", name="Al", mobile="555-0100"
        )

    assert "missing area code" in excinfo.value.message_dict["mobile"][0]
    assert not PbxUser.objects.exists()


def test_sms_number_is_stored_e164_using_the_org_default_region(db):
    org = OrganizationFactory(default_region="GB")

    number = sms_number_create(organization=org, number="020 7946 0018")

    assert SmsNumber.objects.get(pk=number.pk).number == "+442079460018"
    assert number.account_id == org.account_id


def test_sms_number_is_unique_per_account_whatever_its_format(db):
    org = OrganizationFactory()
    sibling = OrganizationFactory(account=org.account)
    sms_number_create(organization=org, number="+14155550123")

    with pytest.raises(ValidationError) as excinfo:
        sms_number_create(organization=sibling, number="(415) 555-0123")
    assert "number" in excinfo.value.message_dict


def test_the_same_number_may_exist_in_another_account(db):
    sms_number_create(organization=OrganizationFactory(), number="+14155550123")
    other = sms_number_create(organization=OrganizationFactory(), number="+14155550123")
    assert other.pk


def test_database_enforces_number_uniqueness_per_account(db):
    existing = SmsNumberFactory()
    with pytest.raises(IntegrityError):
        SmsNumber.objects.create(
            account=existing.account, organization=existing.organization, number=existing.number
        )


def test_extension_is_unique_per_organization(db):
    org = OrganizationFactory()
    pbx_user_create(organization=org, extension="101", name="Alice")

    with pytest.raises(ValidationError) as excinfo:
        pbx_user_create(organization=org, extension="101", name="Alice again")
    assert excinfo.value.message_dict
    # Another org may use the same extension.
    assert pbx_user_create(organization=OrganizationFactory(), extension="101", name="Bob").pk


def test_pbx_user_mobile_is_normalized(db):
    org = OrganizationFactory(default_region="US")
    user = pbx_user_create(organization=org, extension="105", name="Eve", mobile="415-555-0155")
    assert PbxUser.objects.get(pk=user.pk).mobile == "+14155550155"


def test_a_number_cannot_be_assigned_to_users_of_another_org(db):
    number = SmsNumberFactory()
    outsider = PbxUserFactory()

    with pytest.raises(ValidationError) as excinfo:
        sms_number_assign(sms_number=number, users=[outsider])
    assert "users" in excinfo.value.message_dict
    assert number.users.count() == 0


def test_unknown_region_is_rejected(db):
    org = OrganizationFactory.build(default_region="XX")
    org.account.save()
    org.account_id = org.account.pk
    with pytest.raises(ValidationError) as excinfo:
        org.full_clean()
    assert "default_region" in excinfo.value.message_dict
    assert not Organization.objects.filter(default_region="XX").exists()
