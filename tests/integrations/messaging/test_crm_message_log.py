"""SMS messages logged to the CRM (DESIGN 4.5 `CreateMessageLog` / `UpdateMessageLog`): each
CRM installation gets one log per message even when a transient failure of another CRM
makes the inbox retry, and a delivery status change updates the logs already created."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from integrations import messaging
from integrations.inbox import inbox_event_process
from integrations.models import InboxEvent, Installation, Message
from integrations.sandbox.generic_crm import GenericCrmSandbox
from tests.integrations.messaging.support import (
    bound_number,
    crm_document,
    crm_installation,
    sms_installation,
)
from tests.integrations.specs.test_example_crm import crm_client

pytestmark = pytest.mark.django_db

INBOUND_BODY = (
    '{ "method": "message", "params":{ "from": "+61855555555", "to": "+61123456789", '
    '"content": "Hello there!" } }'
)
SMS_NUMBER = "+61123456789"

UPDATE_MESSAGE_LOG: dict[str, Any] = {
    "request_method": "PUT",
    "request_path": "/activities/$activity_id$",
    "request_parameters": {"status": "$status$", "notes": "$content$"},
    "response_map": {"id": "$activity_id$"},
}


def _crm(organization: Any, crm_server: Any, name: str, *, update: bool = True) -> Installation:
    """A CRM installation whose message logs carry `name` as their subject (so the sandbox's
    activities tell the CRMs apart), with UpdateMessageLog unless `update` is False."""
    api = copy.deepcopy(crm_document()["API"])
    api["CreateMessageLog"]["request_parameters"]["subject"] = name
    if update:
        api["UpdateMessageLog"] = copy.deepcopy(UPDATE_MESSAGE_LOG)
    return crm_installation(organization, crm_server, spec_id=f"crm-{name}", label=name, API=api)


def _logs(crm_server: Any, subject: str) -> list[dict[str, Any]]:
    return [
        a
        for a in crm_server.activities.values()
        if a.get("type") == "sms" and a.get("subject") == subject
    ]


def _message_posts(crm_server: Any) -> int:
    return len(crm_server.requests_to("/activities", "POST"))


def _outbound(tenant: Any, status: str = Message.Status.SENT) -> Message:
    return Message.objects.create(
        organization=tenant.org,
        direction=Message.Direction.OUTBOUND,
        from_number=SMS_NUMBER,
        to_number="+14155550100",
        content="See you at 3",
        messageid="prov-1",
        status=status,
    )


# -- CreateMessageLog: one log per (message, CRM), retries included ---------------------------


def test_a_retry_after_a_transient_failure_logs_only_to_the_crm_that_missed_it(
    client: Any,
    django_capture_on_commit_callbacks: Any,
    tenant_a: Any,
    sms_server: Any,
    crm_server: Any,
) -> None:
    bound_number(tenant_a.org, sms_installation(tenant_a.org, sms_server), SMS_NUMBER)
    one = _crm(tenant_a.org, crm_server, "one")
    two = _crm(tenant_a.org, crm_server, "two")
    # The first CreateMessageLog to arrive (whichever CRM it is) gets a 500: transient.
    crm_server.fail_next("/activities", status=500, method="POST")

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/services/example-sms/a{tenant_a.account.pk}",
            data=INBOUND_BODY,
            content_type="application/json",
        )
    assert response.status_code == 202, response.content

    event = InboxEvent.objects.get()
    assert event.state == InboxEvent.State.RECEIVED and event.next_attempt_at is not None
    message = Message.objects.get()
    assert len(message.crm_logs) == 1  # the CRM that answered is remembered already
    assert len(_logs(crm_server, "one")) + len(_logs(crm_server, "two")) == 1

    InboxEvent.objects.filter(pk=event.pk).update(next_attempt_at=None)  # the retry is due
    inbox_event_process(event_id=event.pk)

    event.refresh_from_db()
    assert event.state == InboxEvent.State.DONE, event.last_error
    (log_one,) = _logs(crm_server, "one")
    (log_two,) = _logs(crm_server, "two")
    assert _message_posts(crm_server) == 3  # the failure, the first success, the retry
    message.refresh_from_db()
    assert message.crm_logs == {str(one.pk): log_one["id"], str(two.pk): log_two["id"]}
    assert Message.objects.count() == 1


def test_a_crash_between_two_crms_keeps_the_first_log(
    tenant_a: Any, crm_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _crm(tenant_a.org, crm_server, "one")
    _crm(tenant_a.org, crm_server, "two")
    message = _outbound(tenant_a)
    real = messaging._crm_user_for
    calls: list[int] = []

    def crash_on_second(installation: Installation, msg: Message) -> str | None:
        calls.append(installation.pk)
        if len(calls) == 2:
            raise RuntimeError("worker killed")
        return real(installation, msg)

    monkeypatch.setattr(messaging, "_crm_user_for", crash_on_second)
    with pytest.raises(RuntimeError):
        messaging.message_crm_log(message=message)

    stored = Message.objects.get(pk=message.pk).crm_logs
    assert list(stored) == [str(calls[0])]

    monkeypatch.setattr(messaging, "_crm_user_for", real)
    created = messaging.message_crm_log(message=Message.objects.get(pk=message.pk))

    assert len(created) == 1
    assert len(_logs(crm_server, "one")) == 1 and len(_logs(crm_server, "two")) == 1
    assert len(Message.objects.get(pk=message.pk).crm_logs) == 2


def test_logging_again_is_a_no_op(tenant_a: Any, crm_server: Any) -> None:
    _crm(tenant_a.org, crm_server, "one")
    message = _outbound(tenant_a)

    assert len(messaging.message_crm_log(message=message)) == 1
    assert messaging.message_crm_log(message=message) == []
    assert _message_posts(crm_server) == 1


# -- UpdateMessageLog: delivery status changes -----------------------------------------------


def test_a_status_change_updates_the_message_log(tenant_a: Any, crm_server: Any) -> None:
    installation = _crm(tenant_a.org, crm_server, "one")
    message = _outbound(tenant_a)
    (activity_id,) = messaging.message_crm_log(message=message)

    changed = messaging.message_status_apply(message=message, status=Message.Status.DELIVERED)

    assert changed is True
    puts = crm_server.requests_to(f"/activities/{activity_id}", "PUT")
    assert len(puts) == 1
    assert puts[0].json["status"] == "delivered"
    assert crm_server.activities[activity_id]["status"] == "delivered"
    assert crm_server.activities[activity_id]["subject"] == "one"  # created, then updated
    assert Message.objects.get(pk=message.pk).crm_logs == {str(installation.pk): activity_id}

    # The same status again changes nothing and sends nothing.
    assert messaging.message_status_apply(message=message, status="delivered") is False
    assert len(crm_server.requests_to(f"/activities/{activity_id}", "PUT")) == 1


def test_a_crm_without_update_message_log_is_left_alone(tenant_a: Any, crm_server: Any) -> None:
    _crm(tenant_a.org, crm_server, "with")
    _crm(tenant_a.org, crm_server, "without", update=False)
    message = _outbound(tenant_a)
    messaging.message_crm_log(message=message)
    (with_update,) = _logs(crm_server, "with")
    (without,) = copy.deepcopy(_logs(crm_server, "without"))

    messaging.message_status_apply(message=message, status=Message.Status.UNDELIVERED)

    assert len(crm_server.requests_to("/activities/*", "PUT")) == 1
    assert len(crm_server.requests_to(f"/activities/{with_update['id']}", "PUT")) == 1
    assert crm_server.activities[with_update["id"]]["status"] == "undelivered"
    assert crm_server.activities[without["id"]] == without  # untouched (version 1)


def test_a_message_not_logged_sends_no_update(tenant_a: Any, crm_server: Any) -> None:
    _crm(tenant_a.org, crm_server, "one")
    message = _outbound(tenant_a)

    assert messaging.message_status_apply(message=message, status="delivered") is True
    assert crm_server.requests_to("/activities*") == []


def test_a_failed_update_does_not_undo_the_status(tenant_a: Any, crm_server: Any) -> None:
    _crm(tenant_a.org, crm_server, "one")
    message = _outbound(tenant_a)
    (activity_id,) = messaging.message_crm_log(message=message)
    crm_server.fail_next("/activities/", status=400, method="PUT")

    assert messaging.message_status_apply(message=message, status="delivered") is True

    assert Message.objects.get(pk=message.pk).status == "delivered"
    assert crm_server.activities[activity_id]["status"] != "delivered"
    assert crm_server.activities[activity_id]["version"] == 1


# -- The built-in example-crm spec --------------------------------------------------------------


def test_example_crm_update_message_log(crm_server: GenericCrmSandbox) -> None:
    client = crm_client(crm_server)
    values = {
        "call_direction": "outbound",
        "from": "+18185559876",
        "to": "+14155550100",
        "content": "Running late",
        "messageid": "msg-1",
        "status": "sent",
    }
    activity_id = client.call("CreateMessageLog", values).first()["activity_id"]

    updated = client.call(
        "UpdateMessageLog", {**values, "activity_id": activity_id, "status": "delivered"}
    ).first()

    assert updated["activity_id"] == activity_id
    stored = crm_server.activities[activity_id]
    assert stored["status"] == "delivered"
    assert stored["subject"] == "SMS to +14155550100"
    assert stored["notes"] == "Running late"
    assert stored["version"] == 2
    sent = crm_server.last(f"/activities/{activity_id}", "PUT")
    assert sent is not None and "version" not in sent.json


def test_a_sent_message_is_logged_to_the_crm_once(
    django_capture_on_commit_callbacks: Any, tenant_a: Any, sms_server: Any, crm_server: Any
) -> None:
    sms = sms_installation(tenant_a.org, sms_server)
    number = bound_number(tenant_a.org, sms, SMS_NUMBER)
    _crm(tenant_a.org, crm_server, "outbound-crm")

    with django_capture_on_commit_callbacks(execute=True):
        message = messaging.message_send(
            organization=tenant_a.org,
            sms_number=number,
            sender=None,
            to="+14155550100",
            content="Your appointment is confirmed",
        )

    message.refresh_from_db()
    assert message.status == Message.Status.SENT, message.error
    logs = _logs(crm_server, "outbound-crm")
    assert len(logs) == 1
    assert list(message.crm_logs.values()) == [logs[0]["id"]]
