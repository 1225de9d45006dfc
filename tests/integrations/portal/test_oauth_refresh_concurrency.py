"""Several workers find the same installation's access token expired at the same moment: the
installation-level lock makes them collapse into one `refresh_token` grant, and every one of
them goes on with the new token. Real threads, a real database shared between them
(transactional test) and the sandbox CRM's real token endpoint."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection

from integrations.models import Installation
from integrations.sandbox.generic_crm import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from integrations.services import (
    ConnectionTest,
    installation_create,
    installation_test,
    oauth_connect_finish,
    oauth_connect_start,
)
from tests.integrations.portal.portal_support import (
    builtin_version,
    follow_authorize,
    token_grants,
)
from tests.tenants.conftest import Tenant

WORKERS = 4


@pytest.fixture(autouse=True)
def postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("concurrent workers need a database they can share (PostgreSQL)")


@pytest.mark.django_db(transaction=True)
def test_concurrent_refreshes_of_one_installation_make_one_refresh_grant(
    tenant_a: Tenant, crm_server: Any, settings: Any
) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    settings.PUBLIC_BASE_URL = "http://testserver"
    crm_server.configure(auto_approve=True)
    installation = installation_create(
        user=tenant_a.reseller,
        organization=tenant_a.org,
        spec_version=builtin_version("example-crm"),
        properties={"Instance URL": crm_server.url, "Client ID": DEFAULT_CLIENT_ID},
        secret_properties={"Client Secret": DEFAULT_CLIENT_SECRET},
    )
    url = oauth_connect_start(installation=installation, user=tenant_a.reseller)
    answer = follow_authorize(url)
    oauth_connect_finish(state=answer["state"], code=answer["code"], user=tenant_a.reseller)
    old_access = Installation.objects.get(pk=installation.pk).tokens["access_token"]
    # Every worker now gets 401 token_expired; the first refresh is held in the CRM for a
    # moment so the others arrive while it is in flight.
    crm_server.advance_clock(crm_server.token_lifetime + 60)
    crm_server.delay_next("/oauth/token", seconds=0.5, method="POST")
    start = threading.Barrier(WORKERS)
    outcomes: list[ConnectionTest] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            start.wait()
            own = Installation.objects.get(pk=installation.pk)
            outcomes.append(installation_test(installation=own, method_name="Users"))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert [o.ok for o in outcomes] == [True] * WORKERS, [o.error for o in outcomes]
    assert token_grants(crm_server, "/oauth/token") == ["authorization_code", "refresh_token"]
    stored = Installation.objects.get(pk=installation.pk)
    assert stored.tokens["access_token"] != old_access
    assert stored.status == Installation.Status.ACTIVE
