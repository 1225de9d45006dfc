"""Builders shared by the messaging tests: SMS and CRM installations pointed at sandboxes."""

from __future__ import annotations

import copy
from typing import Any

from integrations.callbacks import callback_subscription_create
from integrations.models import CallbackSubscription, Installation
from tests.factories import FACTORY_CRM_DOCUMENT, InstallationFactory, SmsNumberFactory
from tests.integrations.portal.portal_support import approved_version, builtin_version

CRM_API_KEY = "crm-sandbox-api-key"


def sms_installation(organization: Any, sms_server: Any, **properties: Any) -> Installation:
    """The built-in example-sms spec (the seed's template) sending to the SMS sandbox."""
    return InstallationFactory(
        organization=organization,
        spec_version=builtin_version("example-sms"),
        properties={"API URL": sms_server.url + "/webhook", **properties},
        secret_properties={},
    )


def bound_number(organization: Any, installation: Installation, number: str, users=()) -> Any:
    sms_number = SmsNumberFactory(
        organization=organization, number=number, installation=installation
    )
    if users:
        sms_number.users.set(users)
    return sms_number


def crm_document(spec_id: str = "lookup-crm", **changes: Any) -> dict[str, Any]:
    """The factory CRM spec (bearer API key against the generic CRM) with a contact_url, the
    richer FindContact fields and CreateMessageLog."""
    document = copy.deepcopy(FACTORY_CRM_DOCUMENT)
    document.update(
        {
            "id": spec_id,
            "name": spec_id.replace("-", " ").title(),
            "contact_url": "$Base URL$/app/contacts/$contact_id$",
        }
    )
    document["API"]["FindContact"]["response_map"] = {
        "records": [
            {
                "id": "$contact_id$",
                "name": "$contact_name$",
                "email": "$contact_email$",
                "company": "$contact_company$",
            }
        ]
    }
    document["API"]["CreateMessageLog"] = {
        "request_method": "POST",
        "request_path": "/activities",
        "request_parameters": {
            "type": "sms",
            "subject": "SMS",
            "direction": "$call_direction$",
            "contact_id": "$contact_id$",
            "from": "$from$",
            "to": "$to$",
            "notes": "$content$",
            "message_id": "$messageid$",
        },
        "response_map": {"id": "$activity_id$"},
    }
    document.update(changes)
    return document


def crm_installation(
    organization: Any, crm_server: Any, *, spec_id: str = "lookup-crm", label: str = "", **changes
) -> Installation:
    return InstallationFactory(
        organization=organization,
        spec_version=approved_version(crm_document(spec_id, **changes)),
        label=label,
        properties={"Base URL": crm_server.url},
        secret_properties={"API Key": CRM_API_KEY},
    )


def subscribe(organization: Any, callback_type: str, url: str) -> CallbackSubscription:
    subscription, _secret = callback_subscription_create(
        organization=organization,
        name=f"{callback_type} to the PBX",
        callback_type=callback_type,
        url=url,
        signing_secret="",
    )
    return subscription
