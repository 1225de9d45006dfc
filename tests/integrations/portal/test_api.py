"""REST API of integrations: catalog, spec upload (validation errors as JSON pointers),
installations (secrets write-only), connection test, OAuth connect, user mapping, SMS numbers
and the delivery log — against the generic CRM sandbox where a call is made."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from integrations import services
from integrations.models import (
    CrmUser,
    Installation,
    IntegrationSpec,
    SpecVersion,
    UserFetch,
    UserMapping,
)
from integrations.sandbox.generic_crm import DEFAULT_CLIENT_SECRET
from integrations.services import builtin_specs_sync
from tenants.models import SmsNumber
from tests.factories import (
    FACTORY_CRM_DOCUMENT,
    CrmUserFactory,
    DeliveryLogEntryFactory,
    IntegrationSpecFactory,
    PbxUserFactory,
    SpecVersionFactory,
)
from tests.integrations.portal.mapping_support import Tenant, crm_installation, sms_installation
from tests.integrations.portal.portal_support import (
    approved_version,
    builtin_version,
    connect_through_views,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("allow_loopback")]

API_KEY = "crm-sandbox-api-key"
EXAMPLE_CRM = Path(__file__).resolve().parents[3] / "integrations" / "specs" / "example-crm.json"

# Every operation this API adds (tests/test_openapi.py lists the tenants ones).
INTEGRATIONS_OPERATIONS: dict[str, set[str]] = {
    "/api/v1/organizations/{org_id}/catalog/": {"get"},
    "/api/v1/specs/": {"get"},
    "/api/v1/specs/upload/": {"post"},
    "/api/v1/specs/{spec_id}/": {"get"},
    "/api/v1/organizations/{org_id}/installations/": {"get", "post"},
    "/api/v1/installations/{installation_id}/": {"get", "put", "patch", "delete"},
    "/api/v1/installations/{installation_id}/test/": {"post"},
    "/api/v1/installations/{installation_id}/oauth/connect/": {"post"},
    "/api/v1/installations/{installation_id}/oauth/disconnect/": {"post"},
    "/api/v1/installations/{installation_id}/upgrade/": {"post"},
    "/api/v1/installations/{installation_id}/user-mapping/": {"get"},
    "/api/v1/installations/{installation_id}/user-mapping/{pbx_user_id}/": {
        "get",
        "put",
        "delete",
    },
    "/api/v1/installations/{installation_id}/crm-users/": {"get"},
    "/api/v1/installations/{installation_id}/crm-users/fetch/": {"get", "post"},
    "/api/v1/installations/{installation_id}/crm-users/fetch/{fetch_id}/": {"get"},
    "/api/v1/installations/{installation_id}/sms-numbers/": {"get"},
    "/api/v1/installations/{installation_id}/sms-numbers/{sms_number_id}/": {"put", "delete"},
    "/api/v1/installations/{installation_id}/log/": {"get"},
    "/api/v1/log/{entry_id}/": {"get"},
}


def _url(name: str, **kwargs: Any) -> str:
    return reverse(f"integrations-api:{name}", kwargs=kwargs)


def _client(user: Any) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def builtin_crm() -> IntegrationSpec:
    """An approved built-in crm spec (bearer API key) in every organization's catalog."""
    return SpecVersionFactory().spec


# --- Catalog and specs --------------------------------------------------------------------------


def test_the_catalog_lists_builtins_and_the_accounts_approved_custom_specs(
    tenant_a: Tenant, tenant_b: Tenant, builtin_crm: IntegrationSpec
) -> None:
    own = SpecVersionFactory(spec=IntegrationSpecFactory(account=tenant_a.account)).spec
    submitted = SpecVersionFactory(
        spec=IntegrationSpecFactory(account=tenant_a.account), status="submitted"
    ).spec
    foreign = SpecVersionFactory(spec=IntegrationSpecFactory(account=tenant_b.account)).spec

    response = _client(tenant_a.org_admin).get(_url("catalog", org_id=tenant_a.org.pk))

    assert response.status_code == 200
    entries = {row["id"]: row for row in response.json()["results"]}
    # Built-in specs (the factory's and those of integrations/specs/) and the own approved one;
    # never a submitted version nor another account's spec.
    assert {builtin_crm.pk, own.pk} <= set(entries)
    assert all(
        IntegrationSpec.objects.get(pk=pk).account_id in (None, tenant_a.account.pk)
        for pk in entries
    )
    assert foreign.pk not in entries and submitted.pk not in entries
    entry = entries[builtin_crm.pk]
    assert entry["spec_class"] == "crm" and entry["builtin"] is True
    assert {m["name"] for m in entry["methods"]} == {"Users", "FindContact"}
    assert {p["name"]: p["type"] for p in entry["properties"]} == {
        "Base URL": "url",
        "API Key": "secret",
    }
    assert entry["readiness"]["capabilities"]


def test_spec_list_and_detail(tenant_a: Tenant, builtin_crm: IntegrationSpec) -> None:
    client = _client(tenant_a.reseller)

    listed = client.get(_url("spec-list")).json()["results"]
    detail = client.get(_url("spec-detail", spec_id=builtin_crm.pk)).json()

    assert builtin_crm.pk in {row["id"] for row in listed}
    assert detail["key"] == builtin_crm.spec_id
    assert detail["document"]["API"]["Users"]["request_path"] == "/users"
    assert [v["status"] for v in detail["versions"]] == ["approved"]
    assert detail["readiness"]["score"] >= 0


def test_an_invalid_upload_reports_every_problem_by_json_pointer(tenant_a: Tenant) -> None:
    document = copy.deepcopy(FACTORY_CRM_DOCUMENT)
    document["id"] = "broken-crm"
    document["API"]["FindContact"]["request_path"] = "/contacts/$phon$"
    document["API"]["Users"]["request_method"] = "FETCH"

    response = _client(tenant_a.reseller).post(
        _url("spec-upload"), {"document": document}, format="json"
    )

    assert response.status_code == 400
    body = response.json()
    assert body["message"] == "The spec has 2 problems."
    assert body["errors"]["/API/FindContact/request_path"] == ["unknown placeholder $phon$"]
    assert "/API/Users/request_method" in body["errors"]
    assert not IntegrationSpec.objects.filter(spec_id="broken-crm").exists()


def test_an_upload_reusing_a_builtin_id_is_refused_at_id(tenant_a: Tenant) -> None:
    builtin_specs_sync()
    document = {**copy.deepcopy(FACTORY_CRM_DOCUMENT), "id": "example-crm"}

    response = _client(tenant_a.reseller).post(
        _url("spec-upload"), {"document": document}, format="json"
    )

    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert list(errors) == ["/id"] and "example-crm" in errors["/id"][0]
    assert not IntegrationSpec.objects.filter(account=tenant_a.account).exists()


def test_unparseable_json_in_a_file_is_a_validation_error(tenant_a: Tenant) -> None:
    upload = io.BytesIO(b'{"id": "x", ')
    upload.name = "spec.json"

    response = _client(tenant_a.reseller).post(
        _url("spec-upload"), {"file": upload}, format="multipart"
    )

    assert response.status_code == 400
    body = response.json()
    assert body["message"] and isinstance(body["errors"], dict)


def test_a_valid_upload_waits_for_approval_as_json_or_as_a_file(tenant_a: Tenant) -> None:
    document = {**copy.deepcopy(FACTORY_CRM_DOCUMENT), "id": "acme-crm", "name": "Acme CRM"}
    client = _client(tenant_a.reseller)

    as_json = client.post(_url("spec-upload"), {"document": document}, format="json")
    upload = io.BytesIO(json.dumps({**document, "name": "Acme CRM 2"}).encode())
    upload.name = "acme.json"
    as_file = client.post(_url("spec-upload"), {"file": upload}, format="multipart")

    assert as_json.status_code == 201, as_json.content
    assert as_file.status_code == 201, as_file.content
    assert (as_json.json()["status"], as_json.json()["number"]) == ("submitted", 1)
    assert as_file.json()["number"] == 2
    spec = IntegrationSpec.objects.get(spec_id="acme-crm")
    assert spec.account == tenant_a.account
    # Not approved: not in the catalog yet.
    catalog = client.get(_url("catalog", org_id=tenant_a.org.pk)).json()["results"]
    assert spec.pk not in {row["id"] for row in catalog}


def test_upload_needs_exactly_one_of_document_and_file(tenant_a: Tenant) -> None:
    response = _client(tenant_a.reseller).post(_url("spec-upload"), {}, format="json")

    assert response.status_code == 400
    assert "document" in response.json()["errors"]


def test_an_org_admin_cannot_upload_specs(tenant_a: Tenant) -> None:
    response = _client(tenant_a.org_admin).post(
        _url("spec-upload"), {"document": FACTORY_CRM_DOCUMENT}, format="json"
    )

    assert response.status_code == 403
    assert response.json()["errors"] == {}


# --- Installations --------------------------------------------------------------------------


def _create(client: APIClient, tenant: Tenant, spec: IntegrationSpec, **body: Any) -> Any:
    return client.post(
        _url("installation-list", org_id=tenant.org.pk),
        {"spec": spec.pk, **body},
        format="json",
    )


def test_create_verifies_the_credentials_and_never_returns_the_secret(
    tenant_a: Tenant, builtin_crm: IntegrationSpec, crm_server: Any
) -> None:
    client = _client(tenant_a.reseller)

    response = _create(
        client,
        tenant_a,
        builtin_crm,
        label="Sales CRM",
        properties={"Base URL": crm_server.url},
        secret_properties={"API Key": API_KEY},
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["properties"] == {"Base URL": crm_server.url}
    assert body["secret_properties_set"] == ["API Key"]
    assert "secret_properties" not in body
    assert API_KEY not in response.content.decode()
    installation = Installation.objects.get(pk=body["id"])
    assert installation.secret_properties == {"API Key": API_KEY}
    assert crm_server.requests_to("/users"), "the credentials were verified by a call"
    for url in (
        _url("installation-detail", installation_id=installation.pk),
        _url("installation-list", org_id=tenant_a.org.pk),
    ):
        fetched = client.get(url)
        assert fetched.status_code == 200
        assert API_KEY not in fetched.content.decode()


def test_create_reports_property_errors_by_name(
    tenant_a: Tenant, builtin_crm: IntegrationSpec
) -> None:
    response = _create(
        _client(tenant_a.reseller),
        tenant_a,
        builtin_crm,
        properties={"Base URL": "not a url", "Colour": "blue"},
    )

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert {"Base URL", "API Key", "Colour"} <= set(errors)
    assert not Installation.objects.exists()


def test_create_with_rejected_credentials_is_a_400_with_the_crms_answer(
    tenant_a: Tenant, builtin_crm: IntegrationSpec, crm_server: Any
) -> None:
    response = _create(
        _client(tenant_a.reseller),
        tenant_a,
        builtin_crm,
        properties={"Base URL": crm_server.url},
        secret_properties={"API Key": "wrong-key"},
    )

    assert response.status_code == 400
    body = response.json()
    assert "401" in body["message"] and "wrong-key" not in response.content.decode()
    assert not Installation.objects.exists()


def test_a_spec_outside_the_catalog_cannot_be_installed(tenant_a: Tenant, tenant_b: Tenant) -> None:
    foreign = SpecVersionFactory(spec=IntegrationSpecFactory(account=tenant_b.account)).spec

    response = _create(_client(tenant_a.reseller), tenant_a, foreign)

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["spec"]


def test_update_keeps_a_blank_secret_and_patch_changes_only_what_it_sends(
    tenant_a: Tenant, crm_server: Any
) -> None:
    installation = crm_installation(tenant_a.org, crm_server)
    client = _client(tenant_a.reseller)
    url = _url("installation-detail", installation_id=installation.pk)

    patched = client.patch(url, {"label": "Renamed"}, format="json")
    put = client.put(
        url,
        {"properties": {"Base URL": crm_server.url}, "secret_properties": {"API Key": ""}},
        format="json",
    )

    assert patched.status_code == 200, patched.content
    assert patched.json()["label"] == "Renamed"
    assert put.status_code == 200, put.content
    assert put.json()["secret_properties_set"] == ["API Key"]
    installation.refresh_from_db()
    assert installation.secret_properties == {"API Key": API_KEY}
    assert API_KEY not in patched.content.decode() + put.content.decode()


def test_delete_removes_the_installation(tenant_a: Tenant) -> None:
    installation = crm_installation(tenant_a.org)

    response = _client(tenant_a.reseller).delete(
        _url("installation-detail", installation_id=installation.pk)
    )

    assert response.status_code == 204
    assert not Installation.objects.filter(pk=installation.pk).exists()


def test_the_connection_test_returns_the_mapped_users_and_redacted_requests(
    tenant_a: Tenant, crm_server: Any
) -> None:
    installation = crm_installation(tenant_a.org, crm_server)

    response = _client(tenant_a.org_admin).post(
        _url("installation-test", installation_id=installation.pk),
        {"method_name": "Users"},
        format="json",
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["ok"] is True and body["error"] == ""
    assert {r["user_id"] for r in body["result"]} >= {"u-1001", "u-1002"}
    assert body["requests"][0]["method"] == "GET"
    assert API_KEY not in response.content.decode()


def test_the_connection_test_refuses_a_method_that_is_not_harmless(tenant_a: Tenant) -> None:
    installation = crm_installation(tenant_a.org)

    response = _client(tenant_a.reseller).post(
        _url("installation-test", installation_id=installation.pk),
        {"method_name": "DeleteContact"},
        format="json",
    )

    assert response.status_code == 400
    assert "method_name" in response.json()["errors"]


def test_oauth_connect_returns_the_authorize_url(tenant_a: Tenant, crm_server: Any) -> None:
    spec = IntegrationSpecFactory(spec_id="example-crm-oauth", name="Example CRM (OAuth)")
    version = SpecVersionFactory(spec=spec, document=json.loads(EXAMPLE_CRM.read_text()))
    installation = crm_installation(tenant_a.org)
    Installation.objects.filter(pk=installation.pk).update(
        spec_version=version,
        properties={"Instance URL": crm_server.url, "Client ID": "sandbox-crm-client"},
    )
    installation.refresh_from_db()
    installation.secret_properties = {"Client Secret": DEFAULT_CLIENT_SECRET}
    installation.save()

    response = _client(tenant_a.reseller).post(
        _url("installation-oauth-connect", installation_id=installation.pk)
    )

    assert response.status_code == 200, response.content
    url = response.json()["authorize_url"]
    assert url.startswith(f"{crm_server.url}/oauth/authorize?")
    assert "state=" in url and "client_id=sandbox-crm-client" in url
    assert DEFAULT_CLIENT_SECRET not in response.content.decode()
    assert installation.oauth_states.count() == 1


def test_oauth_connect_on_a_bearer_spec_is_a_400(tenant_a: Tenant) -> None:
    installation = crm_installation(tenant_a.org)

    response = _client(tenant_a.reseller).post(
        _url("installation-oauth-connect", installation_id=installation.pk)
    )

    assert response.status_code == 400
    assert "/authentication/type" in response.json()["errors"]


def test_upgrade_moves_to_the_latest_approved_version_and_asks_for_new_properties(
    tenant_a: Tenant, crm_server: Any
) -> None:
    installation = crm_installation(tenant_a.org, crm_server)
    v1 = installation.spec_version
    document = copy.deepcopy(v1.document)
    document["properties"] = [*document["properties"], {"name": "Team", "required": True}]
    v2 = approved_version(document)
    client = _client(tenant_a.reseller)
    url = _url("installation-upgrade", installation_id=installation.pk)

    missing = client.post(url, {}, format="json")
    installation.refresh_from_db()
    assert missing.status_code == 400, missing.content
    assert list(missing.json()["errors"]) == ["Team"]
    assert installation.spec_version == v1

    upgraded = client.post(url, {"properties": {"Team": "Sales"}}, format="json")

    assert upgraded.status_code == 200, upgraded.content
    body = upgraded.json()
    assert (body["spec_version"], body["spec_version_number"]) == (v2.pk, v1.number + 1)
    assert body["properties"] == {"Base URL": crm_server.url, "Team": "Sales"}
    assert body["secret_properties_set"] == ["API Key"] and API_KEY not in upgraded.content.decode()
    # The credentials were verified again against the CRM.
    assert len(crm_server.requests_to("/users", "GET")) == 1
    again = client.post(url, {}, format="json")
    assert again.status_code == 400 and "nothing to upgrade" in again.json()["message"]


def test_oauth_disconnect_revokes_and_wipes_the_tokens(
    tenant_a: Tenant, crm_server: Any, settings: Any
) -> None:
    settings.PUBLIC_BASE_URL = "http://testserver"
    crm_server.configure(auto_approve=True)
    installation = services.installation_create(
        user=tenant_a.reseller,
        organization=tenant_a.org,
        spec_version=builtin_version("example-crm"),
        properties={"Instance URL": crm_server.url, "Client ID": "sandbox-crm-client"},
        secret_properties={"Client Secret": DEFAULT_CLIENT_SECRET},
    )
    browser = Client()
    browser.force_login(tenant_a.reseller)
    connect_through_views(browser, installation.pk)
    installation.refresh_from_db()
    refresh_token = installation.tokens["refresh_token"]

    response = _client(tenant_a.reseller).post(
        _url("installation-oauth-disconnect", installation_id=installation.pk)
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["connected"] is False and body["status"] == "not_connected"
    assert body["connected_as"] == "" and body["status_detail"] == ""
    revoked = crm_server.requests_to("/oauth/revoke", "POST")
    assert [r.args().get("token") for r in revoked] == [refresh_token]
    installation.refresh_from_db()
    assert installation.tokens is None


def test_oauth_disconnect_of_a_bearer_spec_is_a_400_and_changes_nothing(
    tenant_a: Tenant,
) -> None:
    installation = crm_installation(tenant_a.org)

    response = _client(tenant_a.reseller).post(
        _url("installation-oauth-disconnect", installation_id=installation.pk)
    )

    assert response.status_code == 400
    assert "/authentication/type" in response.json()["errors"]
    installation.refresh_from_db()
    assert installation.status == Installation.Status.ACTIVE


# --- User mapping ---------------------------------------------------------------------------


def test_fetch_then_map_through_the_api(
    tenant_a: Tenant, crm_server: Any, django_capture_on_commit_callbacks: Any
) -> None:
    installation = crm_installation(tenant_a.org, crm_server)
    alice = PbxUserFactory(organization=tenant_a.org, email="ALICE@crm.example")
    client = _client(tenant_a.reseller)

    with django_capture_on_commit_callbacks(execute=True):
        started = client.post(_url("crm-user-fetch", installation_id=installation.pk))
    fetch_id = started.json()["id"]
    status = client.get(
        _url("crm-user-fetch-detail", installation_id=installation.pk, fetch_id=fetch_id)
    )
    latest = client.get(_url("crm-user-fetch", installation_id=installation.pk))
    crm_users = client.get(_url("crm-user-list", installation_id=installation.pk))
    rows = client.get(_url("user-mapping-list", installation_id=installation.pk))

    assert started.status_code == 202 and started.json()["state"] == "pending"
    assert status.json()["state"] == "done" and status.json()["fetched"] == 4
    assert latest.json()["id"] == fetch_id
    assert crm_users.json()["count"] == 4
    by_pbx = {row["pbx_user"]["id"]: row for row in rows.json()["results"]}
    assert by_pbx[alice.pk]["status"] == "auto"
    assert by_pbx[alice.pk]["crm_user"]["external_id"] == "u-1001"
    assert by_pbx[tenant_a.pbx_user.pk]["status"] == "unmatched"

    carol = CrmUser.objects.get(installation=installation, external_id="u-1003")
    detail_url = _url(
        "user-mapping-detail", installation_id=installation.pk, pbx_user_id=tenant_a.pbx_user.pk
    )
    manual = client.put(detail_url, {"crm_user": carol.pk}, format="json")
    assert manual.status_code == 200
    assert manual.json()["status"] == "manual" and manual.json()["crm_user"]["id"] == carol.pk
    assert client.get(detail_url).json()["manual"] is True
    reset = client.delete(detail_url)
    assert reset.status_code == 200 and reset.json()["status"] == "unmatched"


def test_a_crm_user_of_another_installation_is_refused(tenant_a: Tenant) -> None:
    installation = crm_installation(tenant_a.org)
    foreign = CrmUserFactory(installation=crm_installation(tenant_a.org))

    response = _client(tenant_a.reseller).put(
        _url(
            "user-mapping-detail",
            installation_id=installation.pk,
            pbx_user_id=tenant_a.pbx_user.pk,
        ),
        {"crm_user": foreign.pk},
        format="json",
    )

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["crm_user"]
    assert not UserMapping.objects.exists()


def test_fetch_status_before_any_fetch_is_404_and_sms_cannot_fetch(tenant_a: Tenant) -> None:
    client = _client(tenant_a.reseller)
    crm = crm_installation(tenant_a.org)
    sms = sms_installation(tenant_a.org)

    assert client.get(_url("crm-user-fetch", installation_id=crm.pk)).status_code == 404
    refused = client.post(_url("crm-user-fetch", installation_id=sms.pk))
    assert refused.status_code == 400 and "installation" in refused.json()["errors"]
    assert not UserFetch.objects.exists()


# --- SMS numbers ----------------------------------------------------------------------------


def test_bind_assign_and_unbind_a_number(tenant_a: Tenant) -> None:
    installation = sms_installation(tenant_a.org)
    client = _client(tenant_a.reseller)
    url = _url(
        "installation-sms-number-detail",
        installation_id=installation.pk,
        sms_number_id=tenant_a.sms_number.pk,
    )

    bound = client.put(url, {"users": [tenant_a.pbx_user.pk]}, format="json")
    listed = client.get(_url("installation-sms-number-list", installation_id=installation.pk))
    detail = client.get(_url("installation-detail", installation_id=installation.pk))
    unbound = client.delete(url)

    assert bound.status_code == 200, bound.content
    assert bound.json()["installation"] == installation.pk
    assert bound.json()["users"] == [tenant_a.pbx_user.pk]
    assert [row["id"] for row in listed.json()["results"]] == [tenant_a.sms_number.pk]
    spec_id = installation.spec_version.spec.spec_id
    assert detail.json()["sms_webhook_url"].endswith(f"/services/{spec_id}/a{tenant_a.account.pk}")
    assert unbound.status_code == 204
    assert SmsNumber.objects.get(pk=tenant_a.sms_number.pk).installation is None


def test_a_crm_installation_cannot_bind_a_number(tenant_a: Tenant) -> None:
    installation = crm_installation(tenant_a.org)

    response = _client(tenant_a.reseller).put(
        _url(
            "installation-sms-number-detail",
            installation_id=installation.pk,
            sms_number_id=tenant_a.sms_number.pk,
        ),
        {},
        format="json",
    )

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["installation"]


def test_users_of_another_org_cannot_be_assigned_through_the_api(tenant_a: Tenant) -> None:
    installation = sms_installation(tenant_a.org)
    sibling_user = PbxUserFactory(organization=tenant_a.sibling_org)

    response = _client(tenant_a.reseller).put(
        _url(
            "installation-sms-number-detail",
            installation_id=installation.pk,
            sms_number_id=tenant_a.sms_number.pk,
        ),
        {"users": [sibling_user.pk]},
        format="json",
    )

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["users"]
    assert SmsNumber.objects.get(pk=tenant_a.sms_number.pk).installation is None


# --- Delivery log ---------------------------------------------------------------------------


def test_the_log_filters_by_status_and_the_detail_redacts_secrets(tenant_a: Tenant) -> None:
    installation = crm_installation(tenant_a.org)
    secret = installation.secret_properties["API Key"]
    ok = DeliveryLogEntryFactory(installation=installation)
    failed = DeliveryLogEntryFactory(
        installation=installation,
        ok=False,
        status_code=500,
        error="500 from CRM: server error, retrying",
        request_body=f'{{"token": "{secret}"}}',
    )
    client = _client(tenant_a.reseller)
    list_url = _url("delivery-log-list", installation_id=installation.pk)

    everything = client.get(list_url).json()["results"]
    only_ok = client.get(list_url, {"status": "ok"}).json()["results"]
    only_failed = client.get(list_url, {"status": "failed"}).json()["results"]
    bad = client.get(list_url, {"status": "maybe"})
    detail = client.get(_url("delivery-log-detail", entry_id=failed.pk))

    assert [e["id"] for e in everything] == [failed.pk, ok.pk]
    assert [e["id"] for e in only_ok] == [ok.pk]
    assert [e["id"] for e in only_failed] == [failed.pk]
    assert "request_body" not in everything[0]
    assert bad.status_code == 400 and "status" in bad.json()["errors"]
    assert detail.status_code == 200
    assert detail.json()["request_body"] == '{"token": "[redacted]"}'
    assert secret not in detail.content.decode()


# --- Secrets never leave, whatever the route --------------------------------------------------


def test_no_get_route_ever_returns_a_secret_value(
    tenant_a: Tenant, crm_server: Any, django_capture_on_commit_callbacks: Any
) -> None:
    installation = crm_installation(tenant_a.org, crm_server)
    sms = sms_installation(tenant_a.org)
    client = _client(tenant_a.reseller)
    with django_capture_on_commit_callbacks(execute=True):
        fetch_id = client.post(_url("crm-user-fetch", installation_id=installation.pk)).json()["id"]
    client.post(_url("installation-test", installation_id=installation.pk), {}, format="json")
    Installation.objects.filter(pk=installation.pk).update(tokens=None)  # nothing else to leak
    entry = installation.delivery_log.first()
    secrets = {API_KEY, "sms-auth-token-secret"}
    urls = [
        _url("catalog", org_id=tenant_a.org.pk),
        _url("spec-list"),
        _url("spec-detail", spec_id=installation.spec_version.spec_id),
        _url("installation-list", org_id=tenant_a.org.pk),
        _url("installation-detail", installation_id=installation.pk),
        _url("installation-detail", installation_id=sms.pk),
        _url("user-mapping-list", installation_id=installation.pk),
        _url(
            "user-mapping-detail",
            installation_id=installation.pk,
            pbx_user_id=tenant_a.pbx_user.pk,
        ),
        _url("crm-user-list", installation_id=installation.pk),
        _url("crm-user-fetch", installation_id=installation.pk),
        _url("crm-user-fetch-detail", installation_id=installation.pk, fetch_id=fetch_id),
        _url("installation-sms-number-list", installation_id=sms.pk),
        _url("delivery-log-list", installation_id=installation.pk),
        _url("delivery-log-detail", entry_id=entry.pk),
    ]

    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, (url, response.content)
        text = response.content.decode()
        assert not any(secret in text for secret in secrets), url


# --- OpenAPI --------------------------------------------------------------------------------


def test_the_schema_documents_every_operation_with_tags_and_errors(client: Any) -> None:
    schema = client.get("/api/schema/", {"format": "json"}).json()

    for path, methods in INTEGRATIONS_OPERATIONS.items():
        assert path in schema["paths"], path
        documented = set(schema["paths"][path]) & {"get", "post", "put", "patch", "delete"}
        assert documented == methods, path
        for method in methods:
            operation = schema["paths"][path][method]
            assert operation["tags"], (method, path)
            assert {"401", "403"} <= set(operation["responses"]), (method, path)
            if method in ("post", "put", "patch"):
                assert "400" in operation["responses"], (method, path)
    output = schema["components"]["schemas"]["InstallationOutput"]["properties"]
    assert "secret_properties" not in output and "secret_properties_set" in output
    create = schema["components"]["schemas"]["InstallationCreateInput"]["properties"]
    assert create["secret_properties"]["writeOnly"] is True


def test_schema_generation_has_no_warnings(tmp_path: Path) -> None:
    call_command(
        "spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml")
    )


def test_spec_versions_are_pinned_so_an_approved_upload_does_not_move_installations(
    tenant_a: Tenant,
) -> None:
    installation = crm_installation(tenant_a.org)
    newer = SpecVersionFactory(spec=installation.spec_version.spec)

    detail = _client(tenant_a.reseller).get(
        _url("installation-detail", installation_id=installation.pk)
    )

    assert detail.json()["spec_version"] == installation.spec_version_id != newer.pk
    assert SpecVersion.objects.filter(spec=installation.spec_version.spec).count() == 2
