"""Shared pieces of the user-mapping, SMS-number, delivery-log and API tests: installations of
the factory CRM and SMS specs, the CRM one pointed at the generic CRM sandbox."""

from __future__ import annotations

from typing import Any

from integrations.models import Installation
from integrations.sandbox.generic_crm import DEFAULT_API_KEY, GenericCrmSandbox
from tests.factories import InstallationFactory, IntegrationSpecFactory, SpecVersionFactory
from tests.tenants.conftest import Tenant

__all__ = ["Tenant", "crm_installation", "sms_installation"]


def crm_installation(organization: Any, server: GenericCrmSandbox | None = None) -> Installation:
    """An installation of the factory CRM spec (bearer API key) for `organization`, talking to
    `server` when given."""
    properties = {"Base URL": server.url if server else "http://127.0.0.1:9"}
    return InstallationFactory(
        organization=organization,
        properties=properties,
        secret_properties={"API Key": DEFAULT_API_KEY},
    )


def sms_installation(organization: Any) -> Installation:
    spec = IntegrationSpecFactory(spec_class="sms", name="Factory SMS")
    return InstallationFactory(
        organization=organization,
        spec_version=SpecVersionFactory(spec=spec),
        properties={"Base URL": "http://127.0.0.1:9"},
        secret_properties={"Auth Token": "sms-auth-token-secret"},
    )
