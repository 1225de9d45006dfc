"""Demo integrations: the demo organizations get the example CRM and the example SMS
provider installed against the sandbox servers, connected, with users mapped and their SMS
numbers bound — so a new user of `make run` sees a working integration at once.

`demo_integrations_seed()` is idempotent: running it again changes nothing (an installation
that lost its connection is connected again).

The OAuth connect is the real flow: the portal builds the authorize URL with a fresh state,
this module plays the admin's browser on the sandbox CRM's consent page (it posts the page's
Accept form) and hands the code to `oauth_connect_finish`, exactly as the callback view does.
Those browser requests go to the loopback sandbox only (checked first); every request of the
integration itself goes through the engine's HTTP door, which must be allowed to reach
loopback (`OUTBOUND_ALLOW_PRIVATE_NETWORKS=true`, as `make run` sets it).
"""

from __future__ import annotations

import contextlib
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured

from integrations.connections import installation_connection
from integrations.engine.errors import SpecError
from integrations.models import Installation, IntegrationSpec, SpecVersion, UserMapping
from integrations.sandbox.base import require_loopback_url
from integrations.sandbox.generic_crm import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from integrations.services import (
    builtin_specs_sync,
    installation_create,
    installation_update,
    oauth_connect_finish,
    oauth_connect_start,
)
from integrations.sms_numbers import sms_number_bind
from integrations.user_mapping import crm_users_store, user_mapping_set
from tenants.demo import DEMO_ORGS, DEMO_USERNAME, demo_seed
from tenants.models import Organization, PbxUser, SmsNumber

CRM_SPEC_ID = "example-crm"
SMS_SPEC_ID = "example-sms"
CRM_LABEL = "Example CRM (sandbox)"
SMS_LABEL = "Example SMS (sandbox)"
BROWSER_TIMEOUT_SECONDS = 10


@dataclass
class DemoIntegrationsResult:
    """What the seed did, for the command's report."""

    installations: list[Installation] = field(default_factory=list)
    created: int = 0
    connected: int = 0
    mapped: int = 0
    numbers_bound: int = 0


def _latest(spec_id: str) -> SpecVersion:
    spec = IntegrationSpec.objects.get(account__isnull=True, spec_id=spec_id)
    version = spec.latest_approved()
    if version is None:
        raise ImproperlyConfigured(f"The built-in spec {spec_id} has no approved version.")
    return version


def _installation(organization: Organization, spec_id: str) -> Installation | None:
    return (
        Installation.objects.filter(
            organization=organization,
            spec_version__spec__account__isnull=True,
            spec_version__spec__spec_id=spec_id,
        )
        .order_by("pk")
        .first()
    )


def _browser_consent(authorize_url: str) -> dict[str, str]:
    """Play the admin's browser: open the consent page and click Accept; the callback's query.

    The sandbox answers the authorize URL with its consent page (or, with auto-approve, with
    the redirect at once); the page's form posts the request's fields back with
    ``decision=accept``.
    """
    require_loopback_url(authorize_url)
    response = requests.get(authorize_url, allow_redirects=False, timeout=BROWSER_TIMEOUT_SECONDS)
    if response.status_code != 302:
        parts = urllib.parse.urlsplit(authorize_url)
        fields = dict(urllib.parse.parse_qsl(parts.query))
        form = {
            "client_id": fields.get("client_id", ""),
            "redirect_uri": fields.get("redirect_uri", ""),
            "state": fields.get("state", ""),
            "scope": fields.get("scope", ""),
            "decision": "accept",
        }
        response = requests.post(
            urllib.parse.urlunsplit(parts._replace(query="")),
            data=form,
            allow_redirects=False,
            timeout=BROWSER_TIMEOUT_SECONDS,
        )
    location = response.headers.get("Location", "")
    if response.status_code != 302 or not location:
        raise ImproperlyConfigured(
            f"The sandbox CRM did not approve the demo connection ({response.status_code})."
        )
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))


def _connect(installation: Installation, user: Any) -> None:
    answer = _browser_consent(oauth_connect_start(installation=installation, user=user))
    if answer.get("error"):
        raise ImproperlyConfigured(f"The sandbox CRM refused the connection: {answer['error']}")
    oauth_connect_finish(state=answer.get("state", ""), code=answer.get("code", ""), user=user)


def _local_part(email: str) -> str:
    return email.split("@", 1)[0].strip().casefold()


def _map_users(installation: Installation) -> int:
    """Fetch the CRM users, match by email (the portal's rule), then — demo only — map the
    remaining PBX users whose email's local part is a CRM user's (alice@… ↔ alice@…)."""
    result = installation_connection(installation).client.call("Users")
    records = [r for r in result.records if str(r.get("user_id") or "").strip()]
    crm_users_store(installation=installation, records=records)
    crm_users = {
        _local_part(c.email): c for c in installation.crm_users.filter(present=True) if c.email
    }
    mapped_ids = set(
        UserMapping.objects.filter(installation=installation, crm_user__isnull=False).values_list(
            "pbx_user_id", flat=True
        )
    )
    for pbx_user in PbxUser.objects.filter(organization=installation.organization):
        if pbx_user.pk in mapped_ids or not pbx_user.email:
            continue
        crm_user = crm_users.get(_local_part(pbx_user.email))
        if crm_user is not None:
            user_mapping_set(installation=installation, pbx_user=pbx_user, crm_user=crm_user)
    return UserMapping.objects.filter(installation=installation, crm_user__isnull=False).count()


def demo_integrations_seed(*, crm_url: str, sms_url: str) -> DemoIntegrationsResult:
    """Install, connect and wire the example CRM and SMS provider for the demo organizations.

    `crm_url` / `sms_url` are the sandbox servers' base URLs (generic CRM, SMS provider), on
    loopback. Runs `tenants.demo.demo_seed()` first. Idempotent.

    Raises:
        ValueError: a URL is not on loopback.
        ImproperlyConfigured: outbound requests may not reach loopback, or the sandbox
            refused the connection.
        IntegrationError / SpecError: the sandbox failed (is it running?).
    """
    crm_url, sms_url = crm_url.rstrip("/"), sms_url.rstrip("/")
    require_loopback_url(crm_url)
    require_loopback_url(sms_url)
    if not settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS:
        raise ImproperlyConfigured(
            "The demo integrations talk to the sandbox servers on 127.0.0.1: set "
            "OUTBOUND_ALLOW_PRIVATE_NETWORKS=true in the environment."
        )
    demo = demo_seed()
    with contextlib.suppress(SpecError):  # an invalid unrelated built-in must not stop the demo
        builtin_specs_sync()
    user = get_user_model().objects.get(username=DEMO_USERNAME)
    crm_version, sms_version = _latest(CRM_SPEC_ID), _latest(SMS_SPEC_ID)
    outcome = DemoIntegrationsResult()
    for spec in DEMO_ORGS:
        organization = Organization.objects.get(account=demo.account, slug=spec["slug"])

        crm = _installation(organization, CRM_SPEC_ID)
        crm_properties = {"Instance URL": crm_url, "Client ID": DEFAULT_CLIENT_ID}
        if crm is None:
            crm = installation_create(
                user=user,
                organization=organization,
                spec_version=crm_version,
                properties=crm_properties,
                secret_properties={"Client Secret": DEFAULT_CLIENT_SECRET},
                label=CRM_LABEL,
            )
            outcome.created += 1
        elif crm.properties != crm_properties:
            # The sandbox moved (another port): point at it and connect again.
            crm = installation_update(
                installation=crm, properties=crm_properties, secret_properties={}
            )
            Installation.objects.filter(pk=crm.pk).update(tokens=None)
            crm.refresh_from_db()
        if crm.status != Installation.Status.ACTIVE or not (crm.tokens or {}).get("access_token"):
            _connect(crm, user)
            outcome.connected += 1
        crm.refresh_from_db()
        outcome.mapped += _map_users(crm)
        outcome.installations.append(crm)

        sms = _installation(organization, SMS_SPEC_ID)
        sms_properties = {"API URL": f"{sms_url}/webhook"}
        if sms is None:
            sms = installation_create(
                user=user,
                organization=organization,
                spec_version=sms_version,
                properties=sms_properties,
                secret_properties={},
                label=SMS_LABEL,
            )
            outcome.created += 1
        elif sms.properties != sms_properties:
            sms = installation_update(
                installation=sms, properties=sms_properties, secret_properties={}
            )
        for number in SmsNumber.objects.filter(organization=organization, installation=None):
            sms_number_bind(installation=sms, sms_number=number)
            outcome.numbers_bound += 1
        outcome.installations.append(sms)
    return outcome
