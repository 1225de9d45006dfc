"""Demo data: a reseller with two organizations, their PBX users and SMS numbers.

`demo_seed()` is idempotent: running it again changes nothing and creates no duplicates.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import transaction

from tenants.models import Account, Membership, Organization, PbxUser, SmsNumber
from tenants.phones import phone_to_e164
from tenants.services import membership_create, pbx_user_create, sms_number_create

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo-patchbay"
DEMO_ORG_ADMIN_USERNAME = "acme-admin"

DEMO_ORGS = [
    {
        "slug": "acme-dental",
        "name": "Acme Dental",
        "pbx_domain": "acme-dental.ringrx.com",
        "default_region": "US",
        "users": [
            ("101", "Alice Moreno", "alice@acme-dental.example", "(415) 555-0101"),
            ("102", "Bob Chen", "bob@acme-dental.example", ""),
            ("103", "Carla Diaz", "carla@acme-dental.example", ""),
        ],
        "numbers": [("(415) 555-0199", "Front desk", ["101", "102"])],
    },
    {
        "slug": "harbour-physio",
        "name": "Harbour Physio",
        "pbx_domain": "harbour-physio.ringrx.com",
        "default_region": "GB",
        "users": [
            ("200", "Dev Patel", "dev@harbour-physio.example", "07700 900123"),
            ("201", "Emma Hughes", "emma@harbour-physio.example", ""),
        ],
        "numbers": [("020 7946 0018", "Reception", ["200"])],
    },
]


@dataclass
class DemoSeedResult:
    account: Account
    created: bool


@transaction.atomic
def demo_seed() -> DemoSeedResult:
    user_model = get_user_model()
    account, created = Account.objects.get_or_create(
        slug="demo-reseller", defaults={"name": "Demo Reseller"}
    )
    user = user_model.objects.filter(username=DEMO_USERNAME).first()
    if user is None:
        user = user_model.objects.create_user(
            username=DEMO_USERNAME,
            password=DEMO_PASSWORD,
            email="demo@patchbay.example",
            first_name="Demo",
            last_name="Reseller",
        )
    if not Membership.objects.filter(user=user, account=account, role="reseller_admin").exists():
        membership_create(user=user, role=Membership.Role.RESELLER, account=account)

    for spec in DEMO_ORGS:
        org = Organization.objects.filter(account=account, slug=spec["slug"]).first()
        if org is None:
            org = Organization(
                account=account,
                slug=spec["slug"],
                name=spec["name"],
                pbx_domain=spec["pbx_domain"],
                default_region=spec["default_region"],
            )
            org.full_clean()
            org.save()
        by_extension: dict[str, PbxUser] = {}
        for extension, name, email, mobile in spec["users"]:
            pbx_user = PbxUser.objects.filter(organization=org, extension=extension).first()
            if pbx_user is None:
                pbx_user = pbx_user_create(
                    organization=org, extension=extension, name=name, email=email, mobile=mobile
                )
            by_extension[extension] = pbx_user
        for number, label, extensions in spec["numbers"]:
            e164 = phone_to_e164(number, region=org.default_region)
            if not SmsNumber.objects.filter(account=account, number=e164).exists():
                sms_number_create(
                    organization=org,
                    number=number,
                    label=label,
                    users=[by_extension[e] for e in extensions],
                )

    acme = Organization.objects.get(account=account, slug="acme-dental")
    org_admin = user_model.objects.filter(username=DEMO_ORG_ADMIN_USERNAME).first()
    if org_admin is None:
        org_admin = user_model.objects.create_user(
            username=DEMO_ORG_ADMIN_USERNAME,
            password=DEMO_PASSWORD,
            email="admin@acme-dental.example",
        )
    if not Membership.objects.filter(user=org_admin, organization=acme).exists():
        membership_create(
            user=org_admin, role=Membership.Role.ORG_ADMIN, account=account, organization=acme
        )
    return DemoSeedResult(account=account, created=created)
