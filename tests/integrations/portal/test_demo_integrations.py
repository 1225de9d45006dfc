"""The demo is whole: the demo organizations get the example CRM (connected through the real
OAuth flow against the sandbox) and the example SMS provider, users mapped, numbers bound;
running it again changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from integrations.demo import demo_integrations_seed
from integrations.models import Installation, UserMapping
from integrations.services import installation_test
from tenants.models import SmsNumber

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _loopback(settings: Any) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True


def _state() -> tuple:
    return (
        sorted(Installation.objects.values_list("pk", "organization__slug", "status", "label")),
        sorted(UserMapping.objects.values_list("pbx_user__email", "crm_user__email")),
        sorted(SmsNumber.objects.values_list("number", "installation_id")),
    )


def test_demo_orgs_get_connected_crm_and_sms(crm_server: Any, sms_server: Any) -> None:
    result = demo_integrations_seed(crm_url=crm_server.url, sms_url=sms_server.url)

    assert result.created == 4 and result.connected == 2
    crms = Installation.objects.filter(spec_version__spec__spec_id="example-crm")
    assert {i.organization.slug for i in crms} == {"acme-dental", "harbour-physio"}
    for crm in crms:
        assert crm.status == Installation.Status.ACTIVE
        assert crm.connected_as.startswith("Alice Agent")
        assert installation_test(
            installation=crm, method_name="FindContact", phone="+14155550100"
        ).ok
    acme_mappings = dict(
        UserMapping.objects.filter(installation__organization__slug="acme-dental").values_list(
            "pbx_user__email", "crm_user__email"
        )
    )
    assert acme_mappings == {
        "alice@acme-dental.example": "alice@crm.example",
        "bob@acme-dental.example": "bob@crm.example",
    }
    assert not SmsNumber.objects.filter(installation=None).exists()
    for number in SmsNumber.objects.all():
        assert number.installation.spec_version.spec.spec_id == "example-sms"
        assert number.installation.organization_id == number.organization_id


def test_running_it_again_changes_nothing(crm_server: Any, sms_server: Any) -> None:
    demo_integrations_seed(crm_url=crm_server.url, sms_url=sms_server.url)
    before = _state()

    again = demo_integrations_seed(crm_url=crm_server.url, sms_url=sms_server.url)

    assert (again.created, again.connected, again.numbers_bound) == (0, 0, 0)
    assert _state() == before


def test_refuses_without_loopback_access(settings: Any) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = False

    with pytest.raises(ImproperlyConfigured, match="OUTBOUND_ALLOW_PRIVATE_NETWORKS"):
        demo_integrations_seed(crm_url="http://127.0.0.1:1", sms_url="http://127.0.0.1:2")
