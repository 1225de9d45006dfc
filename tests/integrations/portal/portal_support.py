"""Shared pieces of the catalog, installation, OAuth connect and connection-test tests."""

from __future__ import annotations

import contextlib
import copy
import urllib.parse
from typing import Any

import requests
from django.db import connection
from django.test import Client

from integrations.engine.errors import SpecError
from integrations.models import IntegrationSpec, SpecVersion
from integrations.services import builtin_specs_sync
from tests.factories import FACTORY_CRM_DOCUMENT

# A secret that must never reach a page.
API_KEY_SECRET = "crm-sandbox-api-key"


def bearer_crm_document(spec_id: str = "bearer-crm", **changes: Any) -> dict[str, Any]:
    """The factory CRM spec (bearer API key, Users, FindContact) with `changes` applied."""
    document = copy.deepcopy(FACTORY_CRM_DOCUMENT)
    document.update({"id": spec_id, "name": spec_id.replace("-", " ").title()})
    document.update(changes)
    return document


def approved_version(
    document: dict[str, Any], *, account: Any = None, number: int | None = None
) -> SpecVersion:
    """Store `document` as an approved version of a spec (built-in when `account` is None)."""
    spec, _ = IntegrationSpec.objects.get_or_create(
        account=account,
        spec_id=document["id"],
        defaults={"name": document["name"], "spec_class": document["class"]},
    )
    latest = spec.versions.order_by("-number").first()
    return SpecVersion.objects.create(
        spec=spec,
        number=number or ((latest.number + 1) if latest else 1),
        document=document,
        sha256=SpecVersion.digest(document),
        status=SpecVersion.Status.APPROVED,
    )


def builtin_version(spec_id: str) -> SpecVersion:
    """The latest version of a built-in spec from integrations/specs/ (stored if needed)."""
    # Another built-in being edited (invalid for a moment) must not break these tests.
    with contextlib.suppress(SpecError):
        builtin_specs_sync()
    spec = IntegrationSpec.objects.get(account__isnull=True, spec_id=spec_id)
    version = spec.latest_approved()
    assert version is not None
    return version


def raw_installation_column(installation_id: int, column: str) -> str:
    """The stored (encrypted) text of one column, read past the ORM."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {column} FROM integrations_installation WHERE id = %s",
            [installation_id],
        )
        value = cursor.fetchone()[0]
    return "" if value is None else str(value)


def follow_authorize(url: str) -> dict[str, str]:
    """GET the provider's authorize URL (auto-approve on) without following the redirect;
    the query of the callback URL it redirects to (`code`, `state`, …)."""
    response = requests.get(url, allow_redirects=False, timeout=10)
    assert response.status_code == 302, response.text[:500]
    location = response.headers["Location"]
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))


def connect_through_views(client: Client, installation_id: int) -> Any:
    """Connect → authorize (auto-approved) → callback; the callback response."""
    start = client.post(f"/integrations/installations/{installation_id}/connect/")
    assert start.status_code == 302, start.content[:500]
    params = follow_authorize(start["Location"])
    return client.get("/integrations/oauth/callback/", params)


def token_grants(server: Any, path: str) -> list[str]:
    """The grant types the sandbox's token endpoint received, in order."""
    grants = []
    for recorded in server.requests_to(path, "POST"):
        grants.append(recorded.args().get("grant_type", ""))
    return grants
