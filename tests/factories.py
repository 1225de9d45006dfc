"""factory-boy factories for every model. Phone numbers are valid NANP numbers (555-01xx)."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from tenants.models import Account, Membership, Organization, PbxUser, SmsNumber


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", "correct-horse-battery")

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class AccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Account

    name = factory.Sequence(lambda n: f"Reseller {n}")
    slug = factory.Sequence(lambda n: f"reseller-{n}")


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    account = factory.SubFactory(AccountFactory)
    name = factory.Sequence(lambda n: f"Customer {n}")
    slug = factory.Sequence(lambda n: f"customer-{n}")
    pbx_domain = factory.LazyAttribute(lambda o: f"{o.slug}.ringrx.com")
    default_region = "US"


class PbxUserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PbxUser

    organization = factory.SubFactory(OrganizationFactory)
    extension = factory.Sequence(lambda n: str(100 + n))
    name = factory.Sequence(lambda n: f"Agent {n}")
    email = factory.Sequence(lambda n: f"agent{n}@customer.example.com")
    mobile = ""


class SmsNumberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SmsNumber

    organization = factory.SubFactory(OrganizationFactory)
    account = factory.LazyAttribute(lambda s: s.organization.account)
    number = factory.Sequence(lambda n: f"+1415555{(n % 100):02d}{(n // 100) % 100:02d}")
    label = ""


class ResellerMembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    role = Membership.Role.RESELLER
    account = factory.SubFactory(AccountFactory)
    organization = None


class OrgAdminMembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    role = Membership.Role.ORG_ADMIN
    organization = factory.SubFactory(OrganizationFactory)
    account = factory.LazyAttribute(lambda m: m.organization.account)
