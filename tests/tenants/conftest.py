"""Two resellers with one member each and an outsider: the cast of every isolation test."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.factories import (
    AccountFactory,
    OrgAdminMembershipFactory,
    OrganizationFactory,
    PbxUserFactory,
    ResellerMembershipFactory,
    SmsNumberFactory,
)


@dataclass
class Tenant:
    account: object
    reseller: object
    org: object
    sibling_org: object
    org_admin: object
    pbx_user: object
    sms_number: object


def _tenant(name: str) -> Tenant:
    account = AccountFactory(name=f"{name} Reseller", slug=f"{name.lower()}-reseller")
    reseller = ResellerMembershipFactory(account=account, user__username=f"{name.lower()}-reseller")
    org = OrganizationFactory(account=account, name=f"{name} Dental")
    sibling = OrganizationFactory(account=account, name=f"{name} Sibling Clinic")
    org_admin = OrgAdminMembershipFactory(
        organization=org, user__username=f"{name.lower()}-orgadmin"
    )
    pbx_user = PbxUserFactory(organization=org)
    PbxUserFactory(organization=sibling)
    sms_number = SmsNumberFactory(organization=org)
    SmsNumberFactory(organization=sibling)
    return Tenant(account, reseller.user, org, sibling, org_admin.user, pbx_user, sms_number)


@pytest.fixture
def tenant_a(db) -> Tenant:
    return _tenant("Alpha")


@pytest.fixture
def tenant_b(db) -> Tenant:
    return _tenant("Bravo")
