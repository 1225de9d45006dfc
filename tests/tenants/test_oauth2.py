"""OAuth2 for API clients: tokens from the real `/o/token/` endpoint (client credentials),
acting as the user who owns the Application, limited by the `read` / `write` scopes."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_application_model
from rest_framework.test import APIClient

from tenants.models import Organization
from tests.tenants.conftest import Tenant

Application = get_application_model()
AccessToken = get_access_token_model()

CLIENT_SECRET = "s3cret-of-the-reseller-script-0123456789"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _application(owner: object | None, name: str = "Reseller script") -> Any:
    return Application.objects.create(
        name=name,
        user=owner,
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
        client_secret=CLIENT_SECRET,  # stored hashed; this is the only plain copy
    )


def _request_token(application: Any, scope: str, *, basic_auth: bool = True) -> dict[str, Any]:
    """POST to the real token endpoint, as a client script would."""
    form = {"grant_type": "client_credentials", "scope": scope}
    headers: dict[str, str] = {}
    if basic_auth:
        credentials = f"{application.client_id}:{CLIENT_SECRET}".encode()
        headers["HTTP_AUTHORIZATION"] = "Basic " + base64.b64encode(credentials).decode()
    else:
        form |= {"client_id": application.client_id, "client_secret": CLIENT_SECRET}
    response = Client().post(
        reverse("oauth2_provider:token"),
        urlencode(form),
        content_type="application/x-www-form-urlencoded",
        **headers,
    )
    assert response.status_code == 200, response.content
    return response.json()


def _bearer(access_token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token}")
    return client


@pytest.fixture
def reseller_app(tenant_a: Tenant) -> Any:
    return _application(tenant_a.reseller)


def _org_ids(response: Any) -> set[int]:
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


def test_the_token_endpoint_issues_a_bearer_token_with_the_requested_scope(
    reseller_app: Any,
) -> None:
    token = _request_token(reseller_app, "read write", basic_auth=False)

    assert token["token_type"] == "Bearer"
    assert set(token["scope"].split()) == {"read", "write"}
    assert token["expires_in"] > 0


def test_a_token_lists_only_the_application_owners_orgs(
    reseller_app: Any, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    token = _request_token(reseller_app, "read")

    ids = _org_ids(_bearer(token["access_token"]).get(reverse("api-v1:organization-list")))

    assert ids == {tenant_a.org.pk, tenant_a.sibling_org.pk}


def test_an_org_admins_token_sees_only_its_org(tenant_a: Tenant) -> None:
    token = _request_token(_application(tenant_a.org_admin), "read")

    ids = _org_ids(_bearer(token["access_token"]).get(reverse("api-v1:organization-list")))

    assert ids == {tenant_a.org.pk}


def test_a_token_gets_404_for_another_resellers_org(
    reseller_app: Any, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    client = _bearer(_request_token(reseller_app, "read write")["access_token"])
    url = reverse("api-v1:organization-detail", kwargs={"org_id": tenant_b.org.pk})

    assert client.get(url).status_code == 404
    assert client.delete(url).status_code == 404
    assert Organization.objects.filter(pk=tenant_b.org.pk).exists()


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_a_read_token_cannot_write(method: str, reseller_app: Any, tenant_a: Tenant) -> None:
    client = _bearer(_request_token(reseller_app, "read")["access_token"])
    if method == "POST":
        url = reverse("api-v1:organization-list")
    else:
        url = reverse("api-v1:organization-detail", kwargs={"org_id": tenant_a.org.pk})

    response = getattr(client, method.lower())(url, {"name": "Changed"}, format="json")

    assert response.status_code == 403
    assert response.json() == {"message": "This token lacks the 'write' scope.", "errors": {}}
    tenant_a.org.refresh_from_db()
    assert tenant_a.org.name == "Alpha Dental"
    assert not Organization.objects.filter(name="Changed").exists()


def test_a_read_write_token_can_create_and_read(reseller_app: Any, tenant_a: Tenant) -> None:
    client = _bearer(_request_token(reseller_app, "read write")["access_token"])

    created = client.post(
        reverse("api-v1:organization-list"), {"name": "Scripted Clinic"}, format="json"
    )
    number = client.post(
        reverse("api-v1:sms-number-list", kwargs={"org_id": created.json()["id"]}),
        {"number": "(415) 555-0142"},
        format="json",
    )

    assert created.status_code == 201, created.content
    assert Organization.objects.get(pk=created.json()["id"]).account == tenant_a.account
    assert number.status_code == 201
    assert number.json()["number"] == "+14155550142"


def test_a_write_only_token_cannot_read(reseller_app: Any) -> None:
    client = _bearer(_request_token(reseller_app, "write")["access_token"])

    response = client.get(reverse("api-v1:organization-list"))

    assert response.status_code == 403
    assert "'read' scope" in response.json()["message"]


def test_an_expired_token_is_a_401(reseller_app: Any) -> None:
    token = _request_token(reseller_app, "read")
    AccessToken.objects.filter(application=reseller_app).update(
        expires=timezone.now() - timedelta(seconds=1)
    )

    response = _bearer(token["access_token"]).get(reverse("api-v1:organization-list"))

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert set(response.json()) == {"message", "errors"}


def test_an_unknown_token_is_a_401(tenant_a: Tenant) -> None:
    response = _bearer("not-a-token-we-issued").get(reverse("api-v1:organization-list"))

    assert response.status_code == 401
    assert 'error="invalid_token"' in response["WWW-Authenticate"]


def test_a_token_of_a_deactivated_owner_is_a_401(reseller_app: Any, tenant_a: Tenant) -> None:
    token = _request_token(reseller_app, "read")
    tenant_a.reseller.is_active = False
    tenant_a.reseller.save(update_fields=["is_active"])

    response = _bearer(token["access_token"]).get(reverse("api-v1:organization-list"))

    assert response.status_code == 401


def test_a_token_of_an_application_without_owner_is_a_401(tenant_a: Tenant) -> None:
    token = _request_token(_application(None, name="Orphan"), "read")

    response = _bearer(token["access_token"]).get(reverse("api-v1:organization-list"))

    assert response.status_code == 401


def test_a_wrong_client_secret_gets_no_token(reseller_app: Any) -> None:
    response = Client().post(
        reverse("oauth2_provider:token"),
        urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": reseller_app.client_id,
                "client_secret": "wrong",
            }
        ),
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
