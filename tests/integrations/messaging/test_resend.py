"""An admin sends a failed SMS again, or re-runs a CRM message log that failed for good (issue
5, item 4): the "Send again" / "Log to CRM again" button of the conversation page and
``POST /api/v1/organizations/<id>/messages/<id>/resend/``. The resent message reaches the SMS
sandbox and becomes `sent` with the provider's id; the missing CRM log reaches the CRM
sandbox. Inbound messages and messages not failed are refused with a reason, and another
reseller gets 404 with nothing sent."""

from __future__ import annotations

import copy
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone
from oauth2_provider.models import AccessToken
from rest_framework.test import APIClient

from integrations import messaging
from integrations.models import InboxEvent, Installation, Message
from tests.integrations.messaging.support import (
    bound_number,
    crm_document,
    crm_installation,
    sms_installation,
)

pytestmark = pytest.mark.django_db

NUMBER = "+14155550123"
PEER = "+14155550100"
REFUSED = {"error": {"code": "validation_error", "message": "to is blocked", "field": "to"}}


@pytest.fixture
def setup(tenant_a: Any, sms_server: Any) -> dict[str, Any]:
    installation = sms_installation(tenant_a.org, sms_server)
    number = bound_number(tenant_a.org, installation, NUMBER, users=[tenant_a.pbx_user])
    return {"org": tenant_a.org, "installation": installation, "number": number}


def _send(capture: Any, setup: dict[str, Any], content: str = "Your appointment is at 3") -> Any:
    with capture(execute=True):
        message = messaging.message_send(
            organization=setup["org"],
            sms_number=setup["number"],
            sender=None,
            to=PEER,
            content=content,
        )
    message.refresh_from_db()
    return message


def _failed(capture: Any, setup: dict[str, Any], sms_server: Any) -> Message:
    """A message the provider refused (400: failed at once, nothing sent)."""
    sms_server.fail_next("/webhook", status=400, body=REFUSED)
    message = _send(capture, setup)
    assert message.status == Message.Status.FAILED and "400" in message.error
    assert sms_server.sent_messages == []
    return message


def _page(setup: dict[str, Any]) -> str:
    url = reverse("messaging:conversation_detail", args=[setup["org"].pk, setup["number"].pk])
    return f"{url}?with=%2B14155550100"


def _resend_url(setup: dict[str, Any], message: Message) -> str:
    return reverse(
        "messaging:message_resend", args=[setup["org"].pk, setup["number"].pk, message.pk]
    )


def _api_url(org: Any, message: Message) -> str:
    return reverse("messaging-api:message-resend", args=[org.pk, message.pk])


def _flash(response: Any) -> str:
    return " ".join(str(m) for m in response.context["messages"])


def _bearer(user: Any, scope: str) -> APIClient:
    token = AccessToken.objects.create(
        user=user,
        token=f"resend-{uuid.uuid4().hex}",
        scope=scope,
        expires=timezone.now() + timedelta(hours=1),
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token.token}")
    return client


# --- Send again --------------------------------------------------------------------------------


def test_an_org_admin_sends_a_failed_message_again_from_the_conversation(
    client: Any,
    tenant_a: Any,
    setup: dict[str, Any],
    sms_server: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    message = _failed(django_capture_on_commit_callbacks, setup, sms_server)
    client.force_login(tenant_a.org_admin)
    page = client.get(_page(setup)).content.decode()
    assert _resend_url(setup, message) in page
    assert "Send again" in page and "to is blocked" in page

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(_resend_url(setup, message), follow=True)

    assert response.redirect_chain[-1][0] == _page(setup)
    assert f"Message to {PEER} queued to be sent again" in _flash(response)
    message.refresh_from_db()
    assert message.status == Message.Status.SENT, message.error
    assert (message.error, message.attempts) == ("", 1)
    [sent] = sms_server.sent_messages
    assert (sent["to"], sent["from"], sent["content"]) == (PEER, NUMBER, "Your appointment is at 3")
    assert message.messageid == sent["id"]
    assert Message.objects.count() == 1  # the same message, not a copy
    assert _resend_url(setup, message) not in client.get(_page(setup)).content.decode()


def test_messages_not_failed_or_inbound_are_refused_with_a_reason(
    client: Any,
    tenant_a: Any,
    setup: dict[str, Any],
    sms_server: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    sent = _send(django_capture_on_commit_callbacks, setup)
    assert sent.status == Message.Status.SENT
    inbound = Message.objects.create(
        organization=setup["org"],
        installation=setup["installation"],
        sms_number=setup["number"],
        direction=Message.Direction.INBOUND,
        from_number=PEER,
        to_number=NUMBER,
        content="Thanks!",
        status=Message.Status.RECEIVED,
    )
    before = list(Message.objects.order_by("pk").values())
    client.force_login(tenant_a.org_admin)
    page = client.get(_page(setup)).content.decode()
    assert "Send again" not in page and "Log to CRM again" not in page

    with django_capture_on_commit_callbacks(execute=True):
        refused_sent = client.post(_resend_url(setup, sent), follow=True)
        refused_inbound = client.post(_resend_url(setup, inbound), follow=True)

    assert "Only a failed message can be sent again (this one is sent)." in _flash(refused_sent)
    assert "An inbound message cannot be sent again" in _flash(refused_inbound)
    assert list(Message.objects.order_by("pk").values()) == before
    assert len(sms_server.sent_messages) == 1
    assert client.get(_resend_url(setup, sent)).status_code == 405


def test_a_disconnected_integration_is_refused_saying_to_reconnect(
    client: Any,
    tenant_a: Any,
    setup: dict[str, Any],
    sms_server: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    message = _failed(django_capture_on_commit_callbacks, setup, sms_server)
    Installation.objects.filter(pk=setup["installation"].pk).update(
        status=Installation.Status.NEEDS_RECONNECT
    )
    client.force_login(tenant_a.org_admin)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(_resend_url(setup, message), follow=True)

    assert "reconnect or enable it, then send the message again" in _flash(response)
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert sms_server.sent_messages == []


def test_api_resend_needs_the_write_scope_and_sends_through_the_sandbox(
    tenant_a: Any, setup: dict[str, Any], sms_server: Any, django_capture_on_commit_callbacks: Any
) -> None:
    message = _failed(django_capture_on_commit_callbacks, setup, sms_server)
    url = _api_url(setup["org"], message)

    read_only = _bearer(tenant_a.org_admin, "read").post(url)
    assert read_only.status_code == 403
    assert "write" in read_only.json()["message"]
    assert Message.objects.get(pk=message.pk).status == Message.Status.FAILED

    with django_capture_on_commit_callbacks(execute=True):
        response = _bearer(tenant_a.org_admin, "read write").post(url)

    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["id"], body["status"], body["error"]) == (message.pk, "queued", "")
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    [sent] = sms_server.sent_messages
    assert message.messageid == sent["id"] and sent["to"] == PEER

    again = _bearer(tenant_a.org_admin, "read write").post(url)
    assert again.status_code == 400
    assert "Only a failed message can be sent again (this one is sent)." in str(again.json())
    assert len(sms_server.sent_messages) == 1


def test_another_reseller_gets_404_and_nothing_is_sent(
    client: Any,
    tenant_a: Any,
    tenant_b: Any,
    setup: dict[str, Any],
    sms_server: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    message = _failed(django_capture_on_commit_callbacks, setup, sms_server)
    before = list(Message.objects.values())
    client.force_login(tenant_b.reseller)
    api = APIClient()
    api.force_login(tenant_b.reseller)

    with django_capture_on_commit_callbacks(execute=True):
        statuses = [
            client.post(_resend_url(setup, message)).status_code,
            api.post(_api_url(setup["org"], message)).status_code,
            api.post(_api_url(tenant_b.org, message)).status_code,
        ]

    assert statuses == [404, 404, 404]
    assert list(Message.objects.values()) == before
    assert sms_server.sent_messages == []


# --- CRM log again -----------------------------------------------------------------------------


def _crm(organization: Any, crm_server: Any) -> Installation:
    api = copy.deepcopy(crm_document()["API"])
    api["CreateMessageLog"]["request_parameters"]["subject"] = "resend-crm"
    return crm_installation(organization, crm_server, spec_id="crm-resend", label="CRM", API=api)


def _crm_logs(crm_server: Any) -> list[dict[str, Any]]:
    return [a for a in crm_server.activities.values() if a.get("subject") == "resend-crm"]


def test_a_sent_message_whose_crm_log_failed_is_logged_again_from_the_conversation(
    client: Any,
    tenant_a: Any,
    setup: dict[str, Any],
    sms_server: Any,
    crm_server: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    crm = _crm(tenant_a.org, crm_server)
    crm_server.fail_next("/activities", status=400, method="POST")
    message = _send(django_capture_on_commit_callbacks, setup)
    assert message.status == Message.Status.SENT
    assert (message.crm_logs, message.crm_log_due_at) == ({}, None)  # failed for good
    assert _crm_logs(crm_server) == []
    assert messaging.message_resend_action(message=message) == "crm_log"
    client.force_login(tenant_a.org_admin)
    page = client.get(_page(setup)).content.decode()
    assert "Log to CRM again" in page and _resend_url(setup, message) in page

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(_resend_url(setup, message), follow=True)

    assert "Logging to the CRM again" in _flash(response)
    message.refresh_from_db()
    [log] = _crm_logs(crm_server)
    assert message.crm_logs == {str(crm.pk): log["id"]}
    assert message.crm_log_due_at is None
    assert len(sms_server.sent_messages) == 1  # logged again, not sent again
    assert "Log to CRM again" not in client.get(_page(setup)).content.decode()
    # Nothing left to re-run.
    refused = client.post(_resend_url(setup, message), follow=True)
    assert "Only a failed message can be sent again (this one is sent)." in _flash(refused)


def test_api_relogs_an_inbound_message_whose_crm_log_failed(
    client: Any,
    tenant_a: Any,
    sms_server: Any,
    crm_server: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    sms = sms_installation(tenant_a.org, sms_server)
    bound_number(tenant_a.org, sms, "+61123456789")
    crm = _crm(tenant_a.org, crm_server)
    crm_server.fail_next("/activities", status=400, method="POST")
    body = (
        '{ "method": "message", "params":{ "from": "+61855555555", "to": "+61123456789", '
        '"content": "Hello there!" } }'
    )
    with django_capture_on_commit_callbacks(execute=True):
        accepted = client.post(
            f"/services/example-sms/a{tenant_a.account.pk}",
            data=body,
            content_type="application/json",
        )
    assert accepted.status_code == 202, accepted.content
    assert InboxEvent.objects.get().state == InboxEvent.State.DONE
    message = Message.objects.get()
    assert message.crm_logs == {} and _crm_logs(crm_server) == []
    api = _bearer(tenant_a.org_admin, "read write")

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(_api_url(tenant_a.org, message))

    assert response.status_code == 202, response.content
    message.refresh_from_db()
    [log] = _crm_logs(crm_server)
    assert message.crm_logs == {str(crm.pk): log["id"]}
    assert message.status == Message.Status.RECEIVED
    refused = api.post(_api_url(tenant_a.org, message))
    assert refused.status_code == 400
    assert "An inbound message cannot be sent again" in str(refused.json())
