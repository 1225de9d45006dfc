"""Builders of the call-logging tests: installations of the built-in specs pointed at the
sandboxes (connected, with tokens), mapped PBX users, and call events posted through the real
PBX webhook endpoint."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from django.test import Client

from integrations.engine.auth import TokenSet
from integrations.models import CrmUser, Installation, UserMapping
from integrations.sandbox.generic_crm import DEFAULT_CLIENT_ID as CRM_CLIENT_ID
from integrations.sandbox.generic_crm import DEFAULT_CLIENT_SECRET as CRM_CLIENT_SECRET
from integrations.sandbox.zoho import DEFAULT_CLIENT_ID as ZOHO_CLIENT_ID
from integrations.sandbox.zoho import DEFAULT_CLIENT_SECRET as ZOHO_CLIENT_SECRET
from tenants.models import Organization, PbxUser
from tests.factories import InstallationFactory, OrganizationFactory, PbxUserFactory
from tests.integrations.portal.portal_support import builtin_version

WEBHOOK_SECRET = "calls-webhook-secret-0123456789"
CALLER = "+14155550100"  # Jane Doe (c-1) in the generic CRM, "Jane Doe" in Zoho
TWINS = "+14155550177"  # Sam (c-6, owner u-1002) and Sally (c-7, owner u-1001) Twin
UNKNOWN = "+14155550999"
OUR_NUMBER = "+18185559876"


def organization(**kwargs: Any) -> Organization:
    return OrganizationFactory(webhook_secret=WEBHOOK_SECRET, default_region="US", **kwargs)


def _tokens(body: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return TokenSet(
        access_token=body["access_token"],
        refresh_token=body.get("refresh_token"),
        expires_at=time.time() + 3600,
        extra=extra,
    ).to_dict()


def crm_installation(org: Organization, crm_server: Any, **options: Any) -> Installation:
    """The built-in example-crm spec (OAuth2) connected to the generic CRM sandbox."""
    return InstallationFactory(
        organization=org,
        spec_version=builtin_version("example-crm"),
        properties={"Instance URL": crm_server.url, "Client ID": CRM_CLIENT_ID},
        secret_properties={"Client Secret": CRM_CLIENT_SECRET},
        tokens=_tokens(crm_server.issue_tokens(), instance_url=crm_server.url),
        **options,
    )


def zoho_installation(org: Organization, zoho_server: Any, **options: Any) -> Installation:
    """The built-in Zoho PhoneBridge spec connected to the Zoho sandbox."""
    return InstallationFactory(
        organization=org,
        spec_version=builtin_version("zoho-phonebridge"),
        properties={
            "Accounts URL": zoho_server.url,
            "API Domain": zoho_server.url,
            "Client ID": ZOHO_CLIENT_ID,
        },
        secret_properties={"Client Secret": ZOHO_CLIENT_SECRET},
        tokens=_tokens(zoho_server.issue_tokens(), api_domain=zoho_server.url),
        **options,
    )


def mapped_user(
    installation: Installation, *, extension: str = "101", crm_user_id: str = "u-1001"
) -> PbxUser:
    """A PBX user with `extension` mapped to the CRM user `crm_user_id`."""
    pbx_user = PbxUser.objects.filter(
        organization=installation.organization, extension=extension
    ).first() or PbxUserFactory(organization=installation.organization, extension=extension)
    crm_user, _ = CrmUser.objects.get_or_create(
        installation=installation,
        external_id=crm_user_id,
        defaults={"name": "Alice Agent", "email": "alice@crm.example", "fetched_at": _now()},
    )
    UserMapping.objects.update_or_create(
        installation=installation, pbx_user=pbx_user, defaults={"crm_user": crm_user}
    )
    return pbx_user


def _now() -> Any:
    from django.utils import timezone

    return timezone.now()


def call_event(call_id: str, status: str, **fields: Any) -> dict[str, Any]:
    """A normalized call event (integrations/schemas/call_event.json) of an inbound call."""
    event: dict[str, Any] = {
        "call_id": call_id,
        "direction": "inbound",
        "status": status,
        "caller_number": CALLER,
        "caller_name": "Jane Doe",
        "called_number": OUR_NUMBER,
        "extension": "101",
        "start": "2025-03-01T10:00:00Z",
    }
    if status in ("answered", "completed"):
        event["answer"] = "2025-03-01T10:00:06Z"
    if status in ("completed", "missed", "busy", "failed"):
        event["end"] = "2025-03-01T10:04:51Z"
        event["duration"] = 285 if status == "completed" else 0
    event.update(fields)
    return event


def basic_auth(secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    token = base64.b64encode(f"pbx:{secret}".encode()).decode()
    return {"HTTP_AUTHORIZATION": f"Basic {token}"}


def post_event(
    client: Client, org: Organization, body: dict[str, Any], *, event: str = "call"
) -> Any:
    """POST a PBX webhook with Basic auth (process it with django_capture_on_commit_callbacks)."""
    return client.generic(
        "POST",
        f"/api/v1/hooks/pbx/{org.webhook_key}/{event}",
        data=json.dumps(body).encode(),
        content_type="application/json",
        **basic_auth(),
    )


def deliver(
    client: Client, org: Organization, body: dict[str, Any], capture: Any, *, event: str = "call"
) -> Any:
    """Post an event and run what it enqueued (the inbox task, then the call-logging task)."""
    with capture(execute=True):
        response = post_event(client, org, body, event=event)
    assert response.status_code in (200, 202), response.content
    return response
