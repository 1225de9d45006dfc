"""Tenant isolation of the messaging and lookup routes: a user of another reseller gets 404 on
every route and method (never 403, which would confirm the row exists), and a foreign number
or message under one's own organization is a 404 too."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from integrations import messaging_api_urls, messaging_urls
from integrations.models import Message
from tests.integrations.messaging.support import bound_number, sms_installation

pytestmark = pytest.mark.django_db


@pytest.fixture
def target(tenant_a: Any, sms_server: Any) -> dict[str, Any]:
    installation = sms_installation(tenant_a.org, sms_server)
    number = bound_number(tenant_a.org, installation, "+14155550123", users=[tenant_a.pbx_user])
    message = Message.objects.create(
        organization=tenant_a.org,
        installation=installation,
        sms_number=number,
        direction="inbound",
        from_number="+14155550100",
        to_number=number.number,
        content="secret of Alpha",
        status="received",
    )
    failed = Message.objects.create(
        organization=tenant_a.org,
        installation=installation,
        sms_number=number,
        direction="outbound",
        from_number=number.number,
        to_number="+14155550100",
        content="failed of Alpha",
        status="failed",
        error="HTTP 400",
    )
    return {"org": tenant_a.org, "number": number, "message": message, "failed": failed}


def _api_cases(t: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    org = t["org"].pk
    return [
        ("GET", reverse("messaging-api:message-list", args=[org]), {}),
        (
            "POST",
            reverse("messaging-api:message-list", args=[org]),
            {"sms_number": t["number"].pk, "to": "+14155550100", "content": "intruder"},
        ),
        ("GET", reverse("messaging-api:message-detail", args=[org, t["message"].pk]), {}),
        ("POST", reverse("messaging-api:message-resend", args=[org, t["failed"].pk]), {}),
        ("GET", reverse("messaging-api:lookup", args=[org]), {"phone": "+14155550100"}),
    ]


def _ui_cases(t: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    org = t["org"].pk
    detail = reverse("messaging:conversation_detail", args=[org, t["number"].pk])
    return [
        ("GET", reverse("messaging:conversations", args=[org]), {}),
        ("GET", detail, {"with": "+14155550100"}),
        ("POST", detail, {"to": "+14155550100", "content": "intruder"}),
        (
            "POST",
            reverse("messaging:message_resend", args=[org, t["number"].pk, t["failed"].pk]),
            {},
        ),
    ]


def test_the_cases_cover_every_route() -> None:
    api_names = {p.name for p in messaging_api_urls.urlpatterns}
    ui_names = {p.name for p in messaging_urls.urlpatterns}
    assert api_names == {"message-list", "message-detail", "message-resend", "lookup"}
    assert ui_names == {"conversations", "conversation_detail", "message_resend"}


def test_reseller_of_another_account_gets_404_on_every_api_route(
    target: dict[str, Any], tenant_b: Any
) -> None:
    api = APIClient()
    api.force_authenticate(tenant_b.reseller)
    for method, url, data in _api_cases(target):
        response = api.generic(method, url, **_api_kwargs(method, data))
        assert response.status_code == 404, (method, url, response.status_code)
    assert _unchanged(target)


def _unchanged(target: dict[str, Any]) -> bool:
    """Nothing was sent or re-queued: two messages, the failed one still failed."""
    target["failed"].refresh_from_db()
    return Message.objects.count() == 2 and target["failed"].status == "failed"


def _api_kwargs(method: str, data: dict[str, Any]) -> dict[str, Any]:
    import json
    from urllib.parse import urlencode

    if method == "GET":
        return {"QUERY_STRING": urlencode(data)} if data else {}
    return {"data": json.dumps(data), "content_type": "application/json"}


def test_reseller_of_another_account_gets_404_on_every_page(
    client: Any, target: dict[str, Any], tenant_b: Any
) -> None:
    client.force_login(tenant_b.reseller)
    for method, url, data in _ui_cases(target):
        response = client.get(url, data) if method == "GET" else client.post(url, data)
        assert response.status_code == 404, (method, url)
    assert _unchanged(target)


def test_org_admin_of_a_sibling_org_gets_404(
    client: Any, target: dict[str, Any], tenant_a: Any
) -> None:
    """The org admin of Alpha Dental cannot reach Alpha's sibling clinic."""
    from tests.factories import OrgAdminMembershipFactory

    sibling_admin = OrgAdminMembershipFactory(organization=tenant_a.sibling_org).user
    api = APIClient()
    api.force_authenticate(sibling_admin)
    for method, url, data in _api_cases(target):
        assert api.generic(method, url, **_api_kwargs(method, data)).status_code == 404
    client.force_login(sibling_admin)
    for method, url, data in _ui_cases(target):
        response = client.get(url, data) if method == "GET" else client.post(url, data)
        assert response.status_code == 404


def test_foreign_number_and_message_under_own_org_are_404(
    target: dict[str, Any], tenant_b: Any
) -> None:
    api = APIClient()
    api.force_authenticate(tenant_b.reseller)
    own = tenant_b.org.pk
    send = api.post(
        reverse("messaging-api:message-list", args=[own]),
        {"sms_number": target["number"].pk, "to": "+14155550100", "content": "x"},
        format="json",
    )
    detail = api.get(reverse("messaging-api:message-detail", args=[own, target["message"].pk]))
    listed = api.get(
        reverse("messaging-api:message-list", args=[own]), {"sms_number": target["number"].pk}
    )
    resend = api.post(reverse("messaging-api:message-resend", args=[own, target["failed"].pk]))
    assert (send.status_code, detail.status_code, listed.status_code) == (404, 404, 404)
    assert resend.status_code == 404
    assert _unchanged(target)


def test_anonymous_is_refused(client: Any, target: dict[str, Any]) -> None:
    for method, url, data in _ui_cases(target):
        response = client.get(url, data) if method == "GET" else client.post(url, data)
        assert response.status_code == 302 and "/login/" in response["Location"]
    api = APIClient()
    for method, url, data in _api_cases(target):
        assert api.generic(method, url, **_api_kwargs(method, data)).status_code in (401, 403)
