"""Browser flow in headless Chromium: the demo reseller creates an organization, enables the
Zoho PhoneBridge spec against the sandbox Zoho server, connects it through the sandbox's
consent page, fetches the CRM users and maps one by hand, tests the connection and opens
the delivery log. Each page is screenshotted
under var/screenshots/."""

from __future__ import annotations

import contextlib
import re
from typing import Any

import pytest

from integrations.engine.errors import SpecError
from integrations.models import CrmUser, Installation, UserMapping
from integrations.sandbox.pytest_fixtures import zoho_server  # noqa: F401
from integrations.sandbox.zoho import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from integrations.services import builtin_specs_sync
from tenants.demo import DEMO_PASSWORD, DEMO_USERNAME, demo_seed
from tenants.models import PbxUser
from tests.integrations.portal.portal_support import raw_installation_column

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_enable_connect_and_test_zoho(
    live_server: Any,
    page: Any,
    screenshot: Any,
    settings: Any,
    zoho_server: Any,  # noqa: F811
) -> None:
    settings.PUBLIC_BASE_URL = live_server.url
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    demo_seed()
    with contextlib.suppress(SpecError):
        builtin_specs_sync()

    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", DEMO_USERNAME)
    page.fill("input[name=password]", DEMO_PASSWORD)
    page.click("button:has-text('Log in')")
    page.wait_for_url(f"{live_server.url}/")
    screenshot("1-dashboard")

    page.goto(f"{live_server.url}/orgs/new/")
    page.fill("input[name=name]", "Bayside Optometry")
    page.fill("input[name=pbx_domain]", "bayside-optometry.ringrx.com")
    page.click("main button:has-text('Create organization')")
    page.wait_for_selector(".alert-success")
    assert page.locator("h1").inner_text() == "Bayside Optometry"
    screenshot("2-organization")

    page.click("[data-testid=integrations-tab]")
    page.wait_for_selector("text=No integrations yet")
    screenshot("3-integrations-tab")
    page.click("main .page-actions >> text=Enable an integration")
    page.wait_for_selector("[data-testid=catalog-card]")
    assert page.locator("[data-spec-id=zoho-phonebridge]").count() == 1
    screenshot("4-catalog")

    page.click("[data-spec-id=zoho-phonebridge] >> text=Enable")
    page.wait_for_selector("[data-testid=property-form]")
    page.get_by_label("Accounts URL").fill(zoho_server.url)
    page.get_by_label("API Domain").fill(zoho_server.url)
    page.get_by_label("Client ID").fill(DEFAULT_CLIENT_ID)
    page.get_by_label("Client Secret").fill(DEFAULT_CLIENT_SECRET)
    page.get_by_label("Callback Token").fill("browser-callback-token")
    page.get_by_label("Label").fill("Zoho (sandbox)")
    screenshot("5-enable-form")
    page.click("[data-testid=property-form] button[type=submit]")
    page.wait_for_selector("[data-testid=installation-status]")
    assert "Not connected" in page.locator("[data-testid=installation-status]").first.inner_text()
    assert DEFAULT_CLIENT_SECRET not in page.content()
    screenshot("6-installation-not-connected")

    page.click("[data-testid=connect]")
    page.wait_for_selector("#accept")
    assert page.url.startswith(zoho_server.url)
    screenshot("7-zoho-consent")
    page.click("#accept")
    page.wait_for_selector("[data-testid=connected-as]")
    assert re.match(rf"{re.escape(live_server.url)}/integrations/installations/\d+/$", page.url)
    assert "Connected as Alice Admin" in page.locator("[data-testid=connected-as]").inner_text()
    assert "Connected as Alice Admin" in page.locator(".messages").inner_text()
    screenshot("8-connected")
    installation = Installation.objects.get(organization__name="Bayside Optometry")
    assert installation.status == Installation.Status.ACTIVE
    assert zoho_server.integrated is True
    # The tokens are stored encrypted: neither one is readable in the database column.
    raw_tokens = raw_installation_column(installation.pk, "tokens")
    assert raw_tokens and installation.tokens["access_token"] not in raw_tokens
    assert installation.tokens["refresh_token"] not in raw_tokens

    # Fetch the CRM users (a task: eager here) and map a PBX user by hand.
    bob = PbxUser.objects.create(
        organization=installation.organization,
        extension="201",
        name="Bob Reyes",
        email="bob.reyes@bayside.example",
    )
    page.click("[data-testid=user-mapping-link]")
    page.click("[data-testid=fetch-crm-users]")
    row = page.locator(f"tr[data-pbx-user='{bob.pk}']")
    row.wait_for()
    assert row.get_attribute("data-status") == "unmatched"
    screenshot("9-user-mapping-fetched")
    crm_bob = CrmUser.objects.get(installation=installation, name="Bob Sales")
    row.locator("select").select_option(str(crm_bob.pk))
    page.click("[data-testid=save-mapping]")
    page.wait_for_selector(".alert-success")
    assert page.locator(f"tr[data-pbx-user='{bob.pk}']").get_attribute("data-status") == "manual"
    mapping = UserMapping.objects.get(installation=installation, pbx_user=bob)
    assert mapping.crm_user == crm_bob and mapping.manual
    screenshot("10-user-mapped")
    page.goto(f"{live_server.url}/integrations/installations/{installation.pk}/")

    page.select_option("select[name=method_name]", "FindContact")
    page.fill("input[name=phone]", "(415) 555-0100")
    page.click("#test-connection [data-testid=run-test]")
    page.wait_for_selector("[data-testid=test-result]")
    result = page.locator("[data-testid=test-result]")
    assert result.get_attribute("data-ok") == "true"
    assert "Jane Doe" in result.inner_text()
    assert DEFAULT_CLIENT_SECRET not in page.content()
    screenshot("11-test-connection")

    page.goto(f"{live_server.url}/integrations/installations/{installation.pk}/")
    page.click("[data-testid=delivery-log-link]")
    page.wait_for_load_state()
    assert page.url.endswith(f"/integrations/installations/{installation.pk}/log/")
    # The test connection's FindContact is there, as a successful request (2xx, no error).
    found = page.locator("#delivery-log tr[data-method=FindContact][data-ok=true]")
    assert found.count() >= 1
    assert re.fullmatch(r"2\d\d", found.first.locator(".badge-success").inner_text().strip())
    assert found.first.locator(".log-error").inner_text().strip() == ""
    assert DEFAULT_CLIENT_SECRET not in page.content()
    screenshot("12-delivery-log")
