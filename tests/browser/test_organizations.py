"""Browser smoke test: a reseller logs in, opens the organization list, creates one."""

from __future__ import annotations

import pytest

from tenants.models import Organization
from tests.factories import OrganizationFactory, ResellerMembershipFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_reseller_logs_in_and_creates_an_organization(live_server, page, screenshot) -> None:
    membership = ResellerMembershipFactory(
        user__username="rita", account__name="Rita Telecom", account__slug="rita"
    )
    OrganizationFactory(account=membership.account, name="Existing Clinic")

    page.goto(f"{live_server.url}/login/")
    screenshot("1-login")
    page.fill("input[name=username]", "rita")
    page.fill("input[name=password]", "correct-horse-battery")
    page.click("button:has-text('Log in')")
    page.wait_for_url(f"{live_server.url}/")
    assert page.locator("h1").inner_text() == "Dashboard"
    screenshot("2-dashboard")

    page.click("nav.nav >> text=Organizations")
    page.wait_for_url(f"{live_server.url}/orgs/")
    assert page.locator("table.table").inner_text().count("Existing Clinic") == 1
    screenshot("3-organizations")

    page.click("text=+ New organization")
    page.wait_for_url(f"{live_server.url}/orgs/new/")
    page.fill("input[name=name]", "Harbour Physio")
    page.fill("input[name=pbx_domain]", "harbour-physio.ringrx.com")
    page.select_option("select[name=default_region]", "GB")
    screenshot("4-new-organization")
    page.click("main button:has-text('Create organization')")

    page.wait_for_selector(".alert-success")
    assert "Organization Harbour Physio created." in page.locator(".messages").inner_text()
    assert page.locator("h1").inner_text() == "Harbour Physio"
    screenshot("5-organization")

    page.goto(f"{live_server.url}/orgs/")
    assert "Harbour Physio" in page.locator("table.table").inner_text()
    screenshot("6-organizations-after")
    assert Organization.objects.get(name="Harbour Physio").default_region == "GB"
