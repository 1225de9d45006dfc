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


# --- Integrations ------------------------------------------------------------------------------

# A small valid crm spec: bearer auth with a secret API key, `Users` from GET /users in the
# generic CRM sandbox's shape ({"records": [{"id", "name", "email"}]}).
FACTORY_CRM_DOCUMENT: dict = {
    "id": "factory-crm",
    "name": "Factory CRM",
    "class": "crm",
    "properties": [
        {"name": "Base URL", "type": "url", "required": True},
        {"name": "API Key", "type": "secret", "required": True},
    ],
    "resource_url": "$Base URL$",
    "authentication": {"type": "bearer", "token": "$API Key$"},
    "API": {
        "Users": {
            "request_method": "GET",
            "request_path": "/users",
            "response_map": {
                "records": [{"id": "$user_id$", "name": "$user_name$", "email": "$user_email$"}]
            },
        },
        "FindContact": {
            "request_method": "GET",
            "request_path": "/contacts/search",
            "request_parameters": {"phone": "$phone$"},
            "response_map": {"records": [{"id": "$contact_id$", "name": "$contact_name$"}]},
        },
    },
}

# A small valid sms spec: one SendMessage and one inbound message model.
FACTORY_SMS_DOCUMENT: dict = {
    "id": "factory-sms",
    "name": "Factory SMS",
    "class": "sms",
    "properties": [
        {"name": "Base URL", "type": "url", "required": True},
        {"name": "Auth Token", "type": "secret"},
    ],
    "resource_url": "$Base URL$",
    "API": {
        "SendMessage": {
            "request_method": "POST",
            "request_path": "/messages",
            "request_parameters": {"from": "$from$", "to": "$to$", "text": "$content$"},
            "response_map": {"id": "$messageid$"},
        }
    },
    "Webhook": [
        {
            "event_key": "message",
            "event_type": "message",
            "request_method": "POST",
            "request_parameters": {
                "type": "$event_key$",
                "from": "$from$",
                "to": "$to$",
                "text": "$content$",
            },
        }
    ],
}


class IntegrationSpecFactory(factory.django.DjangoModelFactory):
    """A built-in (account-less) crm spec unless `account` is given."""

    class Meta:
        model = "integrations.IntegrationSpec"

    account = None
    spec_id = factory.Sequence(lambda n: f"factory-crm-{n}")
    name = factory.Sequence(lambda n: f"Factory CRM {n}")
    spec_class = "crm"
    logo = ""


class SpecVersionFactory(factory.django.DjangoModelFactory):
    """An approved version whose document matches the spec's class (a small valid spec)."""

    class Meta:
        model = "integrations.SpecVersion"

    spec = factory.SubFactory(IntegrationSpecFactory)
    number = factory.Sequence(lambda n: n + 1)
    document = factory.LazyAttribute(
        lambda v: {
            **(FACTORY_SMS_DOCUMENT if v.spec.spec_class == "sms" else FACTORY_CRM_DOCUMENT),
            "id": v.spec.spec_id,
            "name": v.spec.name,
        }
    )
    sha256 = factory.LazyAttribute(lambda v: _document_digest(v.document))
    status = "approved"


def _document_digest(document: dict) -> str:
    from integrations.models import SpecVersion

    return SpecVersion.digest(document)


class InstallationFactory(factory.django.DjangoModelFactory):
    """An active installation of a crm spec; `properties`/`secret_properties` point nowhere
    useful unless a test sets them (e.g. to a sandbox server's URL and API key)."""

    class Meta:
        model = "integrations.Installation"

    organization = factory.SubFactory(OrganizationFactory)
    spec_version = factory.SubFactory(SpecVersionFactory)
    label = ""
    status = "active"
    properties = factory.LazyFunction(lambda: {"Base URL": "http://127.0.0.1:9"})
    secret_properties = factory.LazyFunction(lambda: {"API Key": "factory-api-key"})


class CrmUserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "integrations.CrmUser"

    installation = factory.SubFactory(InstallationFactory)
    external_id = factory.Sequence(lambda n: f"u-{5000 + n}")
    name = factory.Sequence(lambda n: f"CRM User {n}")
    email = factory.Sequence(lambda n: f"crm{n}@crm.example")
    present = True
    fetched_at = factory.LazyFunction(lambda: _now())


def _now():
    from django.utils import timezone

    return timezone.now()


class UserMappingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "integrations.UserMapping"

    installation = factory.SubFactory(InstallationFactory)
    pbx_user = factory.SubFactory(
        PbxUserFactory, organization=factory.SelfAttribute("..installation.organization")
    )
    crm_user = factory.SubFactory(
        CrmUserFactory, installation=factory.SelfAttribute("..installation")
    )
    manual = False


class DeliveryLogEntryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "integrations.DeliveryLogEntry"

    installation = factory.SubFactory(InstallationFactory)
    organization = factory.LazyAttribute(lambda e: e.installation.organization)
    method_name = "FindContact"
    http_method = "GET"
    url = "http://127.0.0.1:9/contacts/search?phone=%2B14155550100"
    status_code = 200
    ok = True
    duration_ms = 42
    attempt = 1
    error = ""
    request_body = ""
    response_body = '{"records": []}'
    produced_ids = factory.LazyFunction(dict)


class OAuthStateFactory(factory.django.DjangoModelFactory):
    """A pending (unused, unexpired) OAuth authorization of an installation."""

    class Meta:
        model = "integrations.OAuthState"

    state = factory.Sequence(lambda n: f"factory-oauth-state-{n:08d}")
    installation = factory.SubFactory(InstallationFactory)
    user = factory.SubFactory(UserFactory)
    redirect_uri = "http://testserver/integrations/oauth/callback/"
    expires_at = factory.LazyFunction(lambda: _now() + _minutes(10))
    used_at = None


def _minutes(n: int):
    from datetime import timedelta

    return timedelta(minutes=n)


class UserFetchFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "integrations.UserFetch"

    installation = factory.SubFactory(InstallationFactory)
    state = "done"
    fetched = 3
    error = ""
    finished_at = factory.LazyFunction(lambda: _now())


class NoticeFactory(factory.django.DjangoModelFactory):
    """An unresolved warning about an installation, for its organization's admins."""

    class Meta:
        model = "integrations.Notice"

    installation = factory.SubFactory(InstallationFactory)
    organization = factory.LazyAttribute(lambda n: n.installation.organization)
    level = "warning"
    message = factory.Sequence(lambda n: f"Integration {n} needs reconnecting.")
    action_url = factory.LazyAttribute(
        lambda n: f"/integrations/installations/{n.installation.pk}/"
    )
    resolved_at = None


class CallFactory(factory.django.DjangoModelFactory):
    """A completed inbound call, with its normalized data."""

    class Meta:
        model = "integrations.Call"

    organization = factory.SubFactory(OrganizationFactory)
    call_id = factory.Sequence(lambda n: f"factory-call-{n}")
    status = "completed"
    data = factory.LazyFunction(
        lambda: {
            "direction": "inbound",
            "from": "+14155550100",
            "to": "+14155550111",
            "extension": "101",
            "duration": 95,
        }
    )


class CallActivityFactory(factory.django.DjangoModelFactory):
    """The CRM activity of a call, created in the installation's CRM."""

    class Meta:
        model = "integrations.CallActivity"

    installation = factory.SubFactory(InstallationFactory)
    call = factory.SubFactory(
        CallFactory, organization=factory.SelfAttribute("..installation.organization")
    )
    state = "created"
    activity_id = factory.Sequence(lambda n: f"act-{7000 + n}")
    contact_id = factory.Sequence(lambda n: f"c-{3000 + n}")


class MessageFactory(factory.django.DjangoModelFactory):
    """An inbound SMS to one of the organization's numbers."""

    class Meta:
        model = "integrations.Message"

    sms_number = factory.SubFactory(SmsNumberFactory)
    organization = factory.LazyAttribute(lambda m: m.sms_number.organization)
    installation = None
    direction = "inbound"
    from_number = "+14155550123"
    to_number = factory.LazyAttribute(lambda m: m.sms_number.number)
    content = factory.Sequence(lambda n: f"Hello {n}")
    status = "received"


class InboxEventFactory(factory.django.DjangoModelFactory):
    """A PBX call event of an organization, already processed."""

    class Meta:
        model = "integrations.InboxEvent"

    source = "pbx"
    organization = factory.SubFactory(OrganizationFactory)
    installation = None
    event_type = "call"
    dedup_key = factory.Sequence(lambda n: f"factory-event-{n}")
    correlation_key = factory.Sequence(lambda n: f"factory-call-{n}")
    body = '{"call_id": "factory-call", "status": "ringing"}'
    content_type = "application/json"
    payload = factory.LazyFunction(lambda: {"call_id": "factory-call", "status": "ringing"})
    received_at = factory.LazyFunction(lambda: _now())
    state = "done"
    processed_at = factory.LazyFunction(lambda: _now())


class CallbackSubscriptionFactory(factory.django.DjangoModelFactory):
    """An active CDR callback with Basic credentials and a signing secret (both encrypted)."""

    class Meta:
        model = "integrations.CallbackSubscription"

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Factory callback {n}")
    callback_type = "cdr"
    url = "http://127.0.0.1:9/hooks/cdr?call={call_id}"
    auth_username = "factory"
    auth_password = "factory-basic-password"
    headers = ""
    signing_secret = "whsec_ZmFjdG9yeS1zaWduaW5nLXNlY3JldC0wMTIzNDU2Nzg5"
    bindings = factory.LazyFunction(list)
    active = True


class CallbackDeliveryFactory(factory.django.DjangoModelFactory):
    """A delivered callback of one inbox event."""

    class Meta:
        model = "integrations.CallbackDelivery"

    subscription = factory.SubFactory(CallbackSubscriptionFactory)
    inbox_event = factory.SubFactory(
        InboxEventFactory, organization=factory.SelfAttribute("..subscription.organization")
    )
    webhook_id = factory.Sequence(lambda n: f"msg_factory{n:012d}")
    payload = factory.LazyFunction(lambda: {"call_id": "factory-call", "duration": 95})
    state = "delivered"
    attempts = 1
    last_status = 200
    delivered_at = factory.LazyFunction(lambda: _now())
