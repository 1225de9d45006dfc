"""Outbound SMS/MMS: SendMessage and SendFile through the SMS sandbox (the seed's template),
the provider's messageid captured, failures recorded with an actionable error, transient
failures retried, and the message_ref round trip for providers that return no id."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from rest_framework.test import APIClient

from integrations import messaging
from integrations.messaging_tasks import message_send_task
from integrations.models import DeliveryLogEntry, Message
from tests.factories import PbxUserFactory
from tests.integrations.messaging.support import bound_number, sms_installation, subscribe
from tests.integrations.portal.portal_support import approved_version, builtin_version

pytestmark = pytest.mark.django_db

NUMBER = "+14155550123"


@pytest.fixture
def sms_setup(tenant_a: Any, sms_server: Any) -> dict[str, Any]:
    installation = sms_installation(tenant_a.org, sms_server)
    sms_number = bound_number(tenant_a.org, installation, NUMBER, users=[tenant_a.pbx_user])
    return {"org": tenant_a.org, "installation": installation, "number": sms_number}


def _make_due(message: Message) -> None:
    """Time passes: the message's next attempt is due."""
    from datetime import timedelta

    from django.utils import timezone

    Message.objects.filter(pk=message.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )


def _send(captured: Any, setup: dict[str, Any], **kwargs: Any) -> Message:
    with captured(execute=True):
        message = messaging.message_send(
            organization=setup["org"],
            sms_number=setup["number"],
            sender=kwargs.pop("sender", None),
            to=kwargs.pop("to", "(415) 555-0100"),
            content=kwargs.pop("content", "Hello from Patchbay"),
            **kwargs,
        )
    message.refresh_from_db()
    return message


def test_send_message_captures_the_providers_messageid(
    django_capture_on_commit_callbacks: Any, sms_setup: dict[str, Any], sms_server: Any, tenant_a
) -> None:
    message = _send(django_capture_on_commit_callbacks, sms_setup, sender=tenant_a.pbx_user)

    assert message.status == Message.Status.SENT, message.error
    assert message.to_number == "+14155550100"  # normalized in the org's region
    sent = sms_server.sent_messages
    assert len(sent) == 1
    assert message.messageid == sent[0]["id"]
    assert sent[0]["kind"] == "message"
    assert sent[0]["from"] == NUMBER
    assert sent[0]["content"] == "Hello from Patchbay"
    assert sent[0]["extension"] == tenant_a.pbx_user.extension
    assert sent[0]["domain"] == tenant_a.org.pbx_domain
    entry = DeliveryLogEntry.objects.get(method_name="SendMessage")
    assert entry.ok and entry.produced_ids == {"messageid": message.messageid}


def test_send_file_uses_sendfile_with_the_file_url(
    django_capture_on_commit_callbacks: Any, sms_setup: dict[str, Any], sms_server: Any
) -> None:
    url = sms_server.media_url("sample.jpg")
    message = _send(django_capture_on_commit_callbacks, sms_setup, content="a photo", media_url=url)

    assert message.status == Message.Status.SENT
    assert message.media_urls == [url]
    sent = sms_server.sent_messages[0]
    assert sent["kind"] == "file" and sent["media_url"] == url
    assert message.messageid == sent["id"]


def test_provider_refusal_marks_the_message_failed_with_an_actionable_error(
    django_capture_on_commit_callbacks: Any, sms_setup: dict[str, Any], sms_server: Any
) -> None:
    sms_server.fail_next(
        "/webhook",
        status=400,
        body={"error": {"code": "validation_error", "message": "to is blocked", "field": "to"}},
    )
    message = _send(django_capture_on_commit_callbacks, sms_setup)

    assert message.status == Message.Status.FAILED
    assert "400" in message.error
    assert message.messageid == ""
    assert DeliveryLogEntry.objects.filter(method_name="SendMessage", ok=False).exists()


def test_transient_failure_is_retried_then_sent(
    sms_setup: dict[str, Any], sms_server: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        message = messaging.message_send(
            organization=sms_setup["org"],
            sms_number=sms_setup["number"],
            sender=None,
            to="+14155550100",
            content="retry me",
        )
    sms_server.fail_next("/webhook", status=503)

    first = messaging.message_deliver(message_id=message.pk, final_attempt=False)
    assert first is not None and first.retry
    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED
    assert "503" in message.error
    assert message.attempts == 1 and message.next_attempt_at is not None
    # Not due yet: a duplicate or early task sends nothing.
    assert messaging.message_deliver(message_id=message.pk) is None
    assert len(sms_server.sent_messages) == 0
    _make_due(message)

    second = messaging.message_deliver(message_id=message.pk, final_attempt=False)
    assert second is not None and not second.retry
    message.refresh_from_db()
    assert message.status == Message.Status.SENT and message.messageid
    assert message.error == ""
    assert len(sms_server.sent_messages) == 1


def test_last_attempt_of_a_transient_failure_marks_failed(
    sms_setup: dict[str, Any], sms_server: Any, django_capture_on_commit_callbacks: Any, settings
) -> None:
    settings.MESSAGE_SEND_MAX_ATTEMPTS = 2
    with django_capture_on_commit_callbacks(execute=False):
        message = messaging.message_send(
            organization=sms_setup["org"],
            sms_number=sms_setup["number"],
            sender=None,
            to="+14155550100",
            content="x",
        )
    sms_server.fail_next("/webhook", status=500)
    Message.objects.filter(pk=message.pk).update(attempts=1)  # the first attempt was made
    result = message_send_task.apply(args=[message.pk]).get()

    message.refresh_from_db()
    assert result["state"] == Message.Status.FAILED
    assert message.status == Message.Status.FAILED and "500" in message.error


def test_a_sent_message_is_never_sent_twice(
    django_capture_on_commit_callbacks: Any, sms_setup: dict[str, Any], sms_server: Any
) -> None:
    message = _send(django_capture_on_commit_callbacks, sms_setup)
    assert messaging.message_deliver(message_id=message.pk) is None
    assert len(sms_server.sent_messages) == 1


def test_send_refuses_an_unbound_number_and_a_sender_not_assigned(tenant_a: Any) -> None:
    from tests.factories import SmsNumberFactory

    unbound = SmsNumberFactory(organization=tenant_a.org, number="+14155550177")
    with pytest.raises(ValidationError) as excinfo:
        messaging.message_send(
            organization=tenant_a.org,
            sms_number=unbound,
            sender=None,
            to="+14155550100",
            content="x",
        )
    assert "sms_number" in excinfo.value.message_dict
    assert Message.objects.count() == 0


def test_sender_must_be_one_of_the_numbers_users(sms_setup: dict[str, Any], tenant_a) -> None:
    stranger = PbxUserFactory(organization=tenant_a.org)
    with pytest.raises(ValidationError) as excinfo:
        messaging.message_send(
            organization=sms_setup["org"],
            sms_number=sms_setup["number"],
            sender=stranger,
            to="+14155550100",
            content="x",
        )
    assert "sender" in excinfo.value.message_dict


def test_unreadable_destination_names_the_field(sms_setup: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as excinfo:
        messaging.message_send(
            organization=sms_setup["org"],
            sms_number=sms_setup["number"],
            sender=None,
            to="not a number",
            content="x",
        )
    assert "to" in excinfo.value.message_dict


# --- Delivery status --------------------------------------------------------------------------


def _post_status(client: Any, url: str, params: dict[str, Any], captured: Any) -> Any:
    with captured(execute=True):
        return client.post(
            url,
            data=json.dumps({"method": "status", "params": params}),
            content_type="application/json",
        )


def test_status_events_update_the_message_through_the_status_map(
    client: Any,
    django_capture_on_commit_callbacks: Any,
    sms_setup: dict[str, Any],
    recorder: Any,
    tenant_a: Any,
) -> None:
    subscribe(tenant_a.org, "message_status", recorder.url + "/status/{status}")
    message = _send(django_capture_on_commit_callbacks, sms_setup)
    url = f"/services/example-sms/a{tenant_a.account.pk}"
    recorder.clear()

    response = _post_status(
        client,
        url,
        {"id": message.messageid, "status": "delivered"},
        django_capture_on_commit_callbacks,
    )
    assert response.status_code == 202, response.content
    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED
    forwarded = recorder.requests_to("/status/delivered")
    assert len(forwarded) == 1
    assert forwarded[0].json["messageid"] == message.messageid

    # A late "sending" (→ sent) never moves it back.
    _post_status(
        client,
        url,
        {"id": message.messageid, "status": "sending"},
        django_capture_on_commit_callbacks,
    )
    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED


def test_a_rejected_status_marks_the_message_failed(
    client: Any, django_capture_on_commit_callbacks: Any, sms_setup: dict[str, Any], tenant_a
) -> None:
    message = _send(django_capture_on_commit_callbacks, sms_setup)
    url = f"/services/example-sms/a{tenant_a.account.pk}"
    _post_status(
        client,
        url,
        {"id": message.messageid, "status": "rejected"},
        django_capture_on_commit_callbacks,
    )
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert "failed" in message.error


def test_status_of_an_unknown_message_is_acknowledged_and_ignored(
    client: Any, sms_setup: dict[str, Any], tenant_a: Any
) -> None:
    from integrations.models import InboxEvent

    response = client.post(
        f"/services/example-sms/a{tenant_a.account.pk}",
        data=json.dumps({"method": "status", "params": {"id": "msg_nope", "status": "delivered"}}),
        content_type="application/json",
    )
    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    assert InboxEvent.objects.get().state == InboxEvent.State.IGNORED


def _ref_spec_document() -> dict[str, Any]:
    """The example-sms spec, but the provider keeps no id of its own: we send our
    message_ref as `reference` and its status events give it back as `id`."""
    version = builtin_version("example-sms")
    document = copy.deepcopy(version.document)
    document.update({"id": "ref-sms", "name": "Ref SMS"})
    document["API"]["SendMessage"]["request_parameters"]["reference"] = "$message_ref$"
    status_model = next(m for m in document["Webhook"] if m["event_type"] == "status")
    status_model["request_parameters"]["params"]["id"] = "$message_ref$"
    return document


def test_message_ref_round_trip_when_the_provider_returns_no_id(
    client: Any,
    django_capture_on_commit_callbacks: Any,
    tenant_a: Any,
    sms_server: Any,
) -> None:
    from tests.factories import InstallationFactory

    sms_server.configure(return_message_id=False)
    version = approved_version(_ref_spec_document(), account=tenant_a.account)
    installation = InstallationFactory(
        organization=tenant_a.org,
        spec_version=version,
        properties={"API URL": sms_server.url + "/webhook"},
        secret_properties={},
    )
    setup = {
        "org": tenant_a.org,
        "number": bound_number(tenant_a.org, installation, NUMBER),
    }
    message = _send(django_capture_on_commit_callbacks, setup)
    assert message.status == Message.Status.SENT
    assert message.messageid == ""
    assert sms_server.sent_messages[0]["extra"]["reference"] == message.message_ref

    response = _post_status(
        client,
        f"/services/ref-sms/a{tenant_a.account.pk}",
        {"id": message.message_ref, "status": "delivered"},
        django_capture_on_commit_callbacks,
    )
    assert response.status_code == 202, response.content
    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED


# --- API ----------------------------------------------------------------------------------


def test_api_send_answers_202_with_the_message_and_lists_the_conversation(
    django_capture_on_commit_callbacks: Any, sms_setup: dict[str, Any], tenant_a: Any
) -> None:
    api = APIClient()
    api.force_authenticate(tenant_a.reseller)
    url = f"/api/v1/organizations/{tenant_a.org.pk}/messages/"
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            url,
            {
                "sms_number": sms_setup["number"].pk,
                "to": "415 555 0100",
                "content": "Hi",
                "sender": tenant_a.pbx_user.pk,
            },
            format="json",
        )
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "queued" and body["to_number"] == "+14155550100"
    assert body["message_ref"]

    listed = api.get(url, {"conversation": "+14155550100"}).json()
    assert [m["id"] for m in listed["results"]] == [body["id"]]
    assert listed["results"][0]["status"] == "sent"
    assert api.get(url, {"conversation": "+14155550199"}).json()["results"] == []
    detail = api.get(f"{url}{body['id']}/").json()
    assert detail["messageid"]


def test_api_send_errors_name_the_field(sms_setup: dict[str, Any], tenant_a: Any) -> None:
    api = APIClient()
    api.force_authenticate(tenant_a.reseller)
    response = api.post(
        f"/api/v1/organizations/{tenant_a.org.pk}/messages/",
        {"sms_number": sms_setup["number"].pk, "to": "nope", "content": "Hi"},
        format="json",
    )
    assert response.status_code == 400
    assert "to" in response.json()["errors"]


def test_a_message_whose_task_was_lost_is_sent_by_the_sweeper_once(
    django_capture_on_commit_callbacks: Any, sms_setup: dict[str, Any], sms_server: Any
) -> None:
    import io
    from datetime import timedelta

    from django.core.management import call_command
    from django.utils import timezone

    # The broker lost the task: stored as queued, never enqueued (on_commit not run).
    with django_capture_on_commit_callbacks(execute=False):
        message = messaging.message_send(
            organization=sms_setup["org"],
            sms_number=sms_setup["number"],
            sender=None,
            to="(415) 555-0100",
            content="Sent by the sweeper",
        )
    Message.objects.filter(pk=message.pk).update(
        updated_at=timezone.now() - timedelta(minutes=10),
        next_attempt_at=timezone.now() - timedelta(minutes=10),
    )
    fresh = messaging.message_send(
        organization=sms_setup["org"],
        sms_number=sms_setup["number"],
        sender=None,
        to="(415) 555-0101",
        content="Just queued",
    )

    out = io.StringIO()
    call_command("sweep", stuck_after=300, stdout=out)
    call_command("sweep", stuck_after=300, stdout=out)

    message.refresh_from_db()
    assert message.status == Message.Status.SENT, message.error
    assert [m["content"] for m in sms_server.sent_messages] == ["Sent by the sweeper"]
    assert Message.objects.get(pk=fresh.pk).status == Message.Status.QUEUED
    assert "1 message(s)" in out.getvalue()
