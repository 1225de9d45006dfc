"""SMS/MMS messages: sending through an organization's SMS integration, storing inbound
messages and delivery statuses, logging conversations to the CRM, and forwarding them to the
organization's outbound callbacks (DESIGN 4.5 `SendMessage`/`SendFile`, 4.6, 7).

Flow of an outbound message::

    message_send() ── Message(queued) ──on_commit──▶ message_send_task ──▶ message_deliver()
                                                         SendMessage / SendFile through the
                                                         number's installation → sent (messageid)
                                                         or failed (actionable error)

Flow of an inbound message (the webhook view in `integrations.webhooks.sms` stores an inbox
event first; its handler in `integrations.messaging_tasks` calls)::

    message_inbound_store() → Message(received) → message_crm_log() → message_forward()

Delivery statuses (`message_status_apply`) find the message by the provider's `messageid` or
by our `message_ref` (for providers that return no id of their own, a spec sends
`$message_ref$` and reads it back from the status event) and only move it forward.

Every function takes model instances obtained through the tenant-scoped selectors (or, for
webhooks, through the routing of `integrations.webhooks.sms`).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError

from integrations.connections import installation_connection, installation_spec
from integrations.engine.errors import IntegrationError, SpecError
from integrations.models import InboxEvent, Installation, IntegrationSpec, Message
from integrations.services import installation_needs_reconnect
from tenants.models import Organization, PbxUser, SmsNumber
from tenants.phones import phone_to_e164

logger = logging.getLogger(__name__)

# Status order: a status event that arrives late (a `sent` after the `delivered`) never moves a
# message backwards. Final states share the top rank; a later final state wins (a carrier may
# report `delivered` after an interim `failed`).
STATUS_RANK: dict[str, int] = {
    Message.Status.QUEUED: 0,
    Message.Status.RECEIVED: 0,
    Message.Status.SENT: 1,
    Message.Status.DELIVERED: 2,
    Message.Status.FAILED: 2,
    Message.Status.UNDELIVERED: 2,
}
OUTBOUND_STATUSES = frozenset(
    {
        Message.Status.QUEUED,
        Message.Status.SENT,
        Message.Status.DELIVERED,
        Message.Status.FAILED,
        Message.Status.UNDELIVERED,
    }
)
MAX_CONTENT_CHARS = 10_000
# A retry's task may arrive this much before its `next_attempt_at` and still run.
EARLY_TOLERANCE = timedelta(seconds=1)


class MessageNotSendable(ValidationError):
    """The message cannot be sent as asked (number not bound, sender not assigned, ...)."""


# --- Sending --------------------------------------------------------------------------------


def _sms_installation_for(sms_number: SmsNumber) -> Installation:
    installation = sms_number.installation
    if installation is None:
        raise MessageNotSendable(
            {
                "sms_number": f"{sms_number.number} is not bound to an SMS integration: bind it "
                "on the SMS numbers page of the organization's SMS integration."
            }
        )
    if installation.status != Installation.Status.ACTIVE:
        raise MessageNotSendable(
            {
                "sms_number": f"The SMS integration of {sms_number.number} is "
                f"{installation.get_status_display().lower()}: fix it before sending."
            }
        )
    return installation


def message_send(
    *,
    organization: Organization,
    sms_number: SmsNumber,
    sender: PbxUser | None,
    to: str,
    content: str,
    media_url: str | None = None,
) -> Message:
    """Store an outbound message as `queued` and send it when the transaction commits.

    `to` is normalized to E.164 in the organization's default region. `media_url` makes it an
    MMS (the spec's `SendFile`, with `content` as its text). The send itself runs in
    `integrations.messaging_tasks.message_send_task`; the message ends `sent` with the
    provider's `messageid`, or `failed` with an error a person can act on.

    Raises ValidationError (naming the field) when the number is not the organization's, is
    not bound to an active SMS integration, the sender is not one of the number's users, the
    number cannot be read, or there is nothing to send.
    """
    if sms_number.organization_id != organization.pk:
        raise MessageNotSendable({"sms_number": "This number belongs to another organization."})
    installation = _sms_installation_for(sms_number)
    if sender is not None:
        if sender.organization_id != organization.pk:
            raise MessageNotSendable({"sender": "The sender belongs to another organization."})
        assigned = list(sms_number.users.values_list("pk", flat=True))
        if assigned and sender.pk not in assigned:
            raise MessageNotSendable(
                {"sender": f"{sender} is not one of the users assigned to {sms_number.number}."}
            )
    to_number = phone_to_e164(to, region=organization.default_region, field="to")
    content = content or ""
    if not content.strip() and not media_url:
        raise MessageNotSendable({"content": "Write a message or attach a file URL."})
    if len(content) > MAX_CONTENT_CHARS:
        raise MessageNotSendable(
            {"content": f"A message may have at most {MAX_CONTENT_CHARS} characters."}
        )
    if media_url:
        if not media_url.startswith(("https://", "http://")):
            raise MessageNotSendable({"media_url": "The file must be an http(s) URL."})
        if not installation_spec(installation).has_method("SendFile"):
            raise MessageNotSendable(
                {"media_url": f"{installation} cannot send files: its spec has no SendFile."}
            )
    message = Message(
        organization=organization,
        installation=installation,
        sms_number=sms_number,
        sender=sender,
        direction=Message.Direction.OUTBOUND,
        from_number=sms_number.number,
        to_number=to_number,
        content=content,
        media_urls=[media_url] if media_url else [],
        status=Message.Status.QUEUED,
        next_attempt_at=timezone.now(),
    )
    message.full_clean()
    with transaction.atomic():
        message.save()
        transaction.on_commit(partial(message_send_enqueue, message_id=message.pk))
    return message


def message_send_enqueue(*, message_id: int, countdown: float | None = None) -> None:
    """Enqueue the send task; a broker that is down leaves the message `queued` (logged) for
    the sweeper (its attempt is due)."""
    from integrations.messaging_tasks import message_send_task

    try:
        message_send_task.apply_async(args=[message_id], countdown=countdown)
    except (OSError, KombuOperationalError) as exc:
        # The broker is down: the message stays queued and says why.
        logger.warning("message %s stored but not enqueued: %s", message_id, exc)
        Message.objects.filter(pk=message_id, status=Message.Status.QUEUED).update(
            error=f"Not sent yet: the task queue is unavailable ({type(exc).__name__}).",
            updated_at=timezone.now(),
        )


def message_send_backoff(attempt: int, retry_after: float | None = None) -> float:
    """Seconds before attempt `attempt + 1`: base * 2**(attempt-1), capped, full jitter, at
    least the provider's Retry-After."""
    base = float(settings.MESSAGE_SEND_RETRY_BASE_SECONDS)
    cap = float(settings.MESSAGE_SEND_RETRY_MAX_SECONDS)
    delay = random.uniform(0, min(cap, base * 2 ** max(0, attempt - 1)))
    return max(delay, base / 2, retry_after or 0.0)


def message_sweep(*, stuck_after_seconds: float | None = None, limit: int = 500) -> list[int]:
    """Enqueue again the outbound messages still `queued` whose attempt is due: a first
    attempt due more than `stuck_after_seconds` ago (default INBOX_STUCK_AFTER_SECONDS; its
    task was never enqueued or was lost with a killed worker), or a retry whose
    `next_attempt_at` has passed (never before it, so a provider's Retry-After is honoured).
    Sending twice is prevented by `message_deliver`'s row lock, status and due-time checks,
    and the attempts stored on the row keep counting towards MESSAGE_SEND_MAX_ATTEMPTS.
    Returns the ids enqueued, oldest due first."""
    if stuck_after_seconds is None:
        stuck_after_seconds = settings.INBOX_STUCK_AFTER_SECONDS
    now = timezone.now()
    cutoff = now - timedelta(seconds=stuck_after_seconds)
    ids = list(
        Message.objects.filter(direction=Message.Direction.OUTBOUND, status=Message.Status.QUEUED)
        .filter(
            Q(attempts=0, next_attempt_at__lte=cutoff)
            | Q(attempts__gt=0, next_attempt_at__lte=now)
            | Q(next_attempt_at__isnull=True, updated_at__lt=cutoff)
        )
        .order_by("next_attempt_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    for message_id in ids:
        message_send_enqueue(message_id=message_id)
    return ids


def message_crm_log_enqueue(*, message_id: int) -> None:
    """Enqueue the CRM log of a sent message; a broker that is down leaves it to the sweeper
    (`Message.crm_log_due_at` is set)."""
    from integrations.messaging_tasks import message_crm_log_task

    try:
        message_crm_log_task.delay(message_id)
    except (OSError, KombuOperationalError) as exc:
        logger.warning("message %s: CRM log not enqueued yet: %s", message_id, exc)


def message_crm_log_sweep(
    *, stuck_after_seconds: float | None = None, limit: int = 500
) -> list[int]:
    """Enqueue again the CRM logs of sent messages still due `stuck_after_seconds` (default
    INBOX_STUCK_AFTER_SECONDS) after they were due: the task's message was lost or its
    worker died. Logging twice is prevented by `Message.crm_logs`. Returns the ids."""
    if stuck_after_seconds is None:
        stuck_after_seconds = settings.INBOX_STUCK_AFTER_SECONDS
    now = timezone.now()
    cutoff = now - timedelta(seconds=stuck_after_seconds)
    ids = list(
        Message.objects.filter(crm_log_due_at__lte=cutoff)
        .order_by("crm_log_due_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    for message_id in ids:
        Message.objects.filter(pk=message_id).update(crm_log_due_at=now)
        message_crm_log_enqueue(message_id=message_id)
    return ids


def message_crm_log_due(*, message_id: int, delay_seconds: float | None = None) -> None:
    """The message's CRM log is due in `delay_seconds` (a retry), or done (None)."""
    due = None
    if delay_seconds is not None:
        due = timezone.now() + timedelta(seconds=max(0.0, delay_seconds))
    Message.objects.filter(pk=message_id).update(crm_log_due_at=due)


@dataclass
class DeliveryOutcome:
    """What one send attempt did: the message, and whether the caller should try again."""

    message: Message
    retry: bool = False
    retry_after: float | None = None
    delay: float | None = None


def _send_values(message: Message) -> dict[str, Any]:
    media_url = message.media_urls[0] if message.media_urls else None
    values: dict[str, Any] = {
        "from": message.from_number,
        "to": message.to_number,
        "message_ref": message.message_ref,
        "text": message.content,
        "status": message.status,
    }
    if message.sender is not None:
        values["extension"] = message.sender.extension
        values["pbx_user_id"] = message.sender.pk
        if message.sender.email:
            values["pbx_user_email"] = message.sender.email
    if media_url:
        # The seed's SendFile puts the file's URL in $content$; $url$ says the same.
        values["content"] = media_url
        values["url"] = media_url
    else:
        values["content"] = message.content
    return values


def message_deliver(*, message_id: int, final_attempt: bool = False) -> DeliveryOutcome | None:
    """Send the `queued` message `message_id` through its installation (one attempt).

    The row is locked while the provider is called, so two workers never send one message;
    a message that is no longer `queued`, or whose next attempt is not due yet (a duplicate
    or early task), is left alone (returns None). Attempts are counted on the row. A success
    stores the captured `messageid` (and a status the provider reported, when it maps to
    ours), marks it `sent` and its CRM log due. A transient failure (timeout, 5xx, 429)
    stores when the next attempt is due (backoff, at least the provider's Retry-After) and
    returns ``retry=True`` with that `delay`, unless this is attempt
    MESSAGE_SEND_MAX_ATTEMPTS or `final_attempt`: then, like a permanent failure, it marks the
    message `failed` with an error a person can act on. Refused credentials also mark the
    installation *needs reconnect*. A spec mistake marks it failed too, naming the problem.
    """
    now = timezone.now()
    with transaction.atomic():
        message = (
            Message.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("installation__spec_version__spec", "installation__organization")
            .select_related("sender")
            .filter(pk=message_id, status=Message.Status.QUEUED)
            .first()
        )
        if message is None:
            return None
        if message.next_attempt_at and message.next_attempt_at > now + EARLY_TOLERANCE:
            return None
        installation = message.installation
        if installation is not None and installation.status == Installation.Status.NEEDS_RECONNECT:
            return DeliveryOutcome(
                _message_fail(
                    message,
                    "Not sent: the number's SMS integration needs reconnecting. Reconnect it "
                    "on its page, then send the message again.",
                )
            )
        if installation is None or installation.status != Installation.Status.ACTIVE:
            return DeliveryOutcome(
                _message_fail(message, "The number's SMS integration was removed or disabled.")
            )
        message.attempts += 1
        last = final_attempt or message.attempts >= int(settings.MESSAGE_SEND_MAX_ATTEMPTS)
        method = "SendFile" if message.media_urls else "SendMessage"
        connection = installation_connection(installation)
        try:
            result = connection.client.call(method, _send_values(message))
        except IntegrationError as exc:
            connection.log.record_failure(exc.message)
            if exc.auth_failed:
                installation_needs_reconnect(installation=installation, message=exc.message)
                return DeliveryOutcome(_message_fail(message, exc.message))
            if not exc.permanent and not last:
                delay = message_send_backoff(message.attempts, exc.retry_after)
                message.next_attempt_at = timezone.now() + timedelta(seconds=delay)
                message.error = (
                    f"Attempt {message.attempts} failed, retrying in {delay:.0f} s: {exc.message}"
                )
                message.save(update_fields=["attempts", "next_attempt_at", "error", "updated_at"])
                return DeliveryOutcome(
                    message, retry=True, retry_after=exc.retry_after, delay=delay
                )
            if not exc.permanent:
                return DeliveryOutcome(
                    _message_fail(
                        message,
                        f"Not sent after {message.attempts} attempt(s): {exc.message} Check "
                        "the SMS provider's status, then send the message again.",
                    )
                )
            return DeliveryOutcome(_message_fail(message, exc.message))
        except SpecError as exc:
            return DeliveryOutcome(
                _message_fail(message, f"The SMS integration's spec is wrong: {exc}")
            )
        values = result.first()
        connection.log.record_result(values)
        messageid = values.get("messageid")
        message.messageid = str(messageid)[:200] if messageid not in (None, "") else ""
        message.status = Message.Status.SENT
        reported = str(values.get("status") or "")
        if reported in (
            Message.Status.DELIVERED,
            Message.Status.FAILED,
            Message.Status.UNDELIVERED,
        ):
            message.status = reported
        message.error = ""
        message.next_attempt_at = None
        if message.status in (Message.Status.SENT, Message.Status.DELIVERED):
            message.crm_log_due_at = timezone.now()
        message.save(
            update_fields=[
                "messageid",
                "status",
                "error",
                "attempts",
                "next_attempt_at",
                "crm_log_due_at",
                "updated_at",
            ]
        )
    return DeliveryOutcome(message)


def _message_fail(message: Message, error: str) -> Message:
    message.status = Message.Status.FAILED
    message.error = error[:4000]
    message.next_attempt_at = None
    message.save(update_fields=["status", "error", "attempts", "next_attempt_at", "updated_at"])
    return message


# --- Inbound ----------------------------------------------------------------------------------


def sms_number_for_inbound(*, account_id: int, to_number: str) -> SmsNumber | None:
    """The SMS number `to_number` (E.164) of the account, or None."""
    return (
        SmsNumber.objects.select_related("organization", "installation__spec_version__spec")
        .filter(account_id=account_id, number=to_number)
        .first()
    )


def message_inbound_store(
    *,
    sms_number: SmsNumber,
    from_number: str,
    content: str,
    media_urls: list[str] | None = None,
    messageid: str = "",
    event: InboxEvent | None = None,
) -> tuple[Message, bool]:
    """Store an inbound message to `sms_number` (idempotent per inbox event).

    The message belongs to the number's organization and installation; the users assigned to
    the number see it in their conversation. With `event`, the message's `message_ref` is
    derived from the event, so a handler that runs twice stores one message. Returns
    ``(message, created)``.
    """
    reference = f"in-{event.pk}" if event is not None else None
    if reference is not None:
        existing = Message.objects.filter(message_ref=reference).first()
        if existing is not None:
            return existing, False
    region = sms_number.organization.default_region
    try:
        sender_number = phone_to_e164(from_number, region=region, field="from")
    except ValidationError:
        sender_number = (from_number or "")[:32]  # short codes and alphanumeric senders
    message = Message(
        organization_id=sms_number.organization_id,
        installation_id=sms_number.installation_id,
        sms_number=sms_number,
        direction=Message.Direction.INBOUND,
        from_number=sender_number,
        to_number=sms_number.number,
        content=content or "",
        media_urls=[u for u in (media_urls or []) if u],
        messageid=(messageid or "")[:200],
        status=Message.Status.RECEIVED,
    )
    if reference is not None:
        message.message_ref = reference
    message.full_clean()
    message.save()
    return message, True


# --- Delivery status --------------------------------------------------------------------------


def message_for_status(
    *, spec: IntegrationSpec, account_id: int, messageid: str = "", message_ref: str = ""
) -> Message | None:
    """The outbound message a status event of `spec`'s provider is about, within the account:
    by our `message_ref` first (unique), else by the provider's `messageid`."""
    candidates = Message.objects.filter(
        organization__account_id=account_id,
        direction=Message.Direction.OUTBOUND,
        installation__spec_version__spec=spec,
    ).select_related("organization")
    if message_ref:
        found = candidates.filter(message_ref=message_ref).first()
        if found is not None:
            return found
    if messageid:
        return candidates.filter(messageid=messageid).order_by("-created_at").first()
    return None


def message_status_apply(*, message: Message, status: str, error: str = "") -> bool:
    """Move `message` to `status` (one of ours, already translated by the spec's status_map).

    Returns whether the message changed. A status we do not know, or one that would move the
    message backwards (`sent` after `delivered`), is ignored. A change is sent on to the CRM
    logs of the message (`message_crm_log_update`).
    """
    if status not in OUTBOUND_STATUSES:
        logger.info("message %s: unknown status %r ignored", message.pk, status)
        return False
    with transaction.atomic():
        current = Message.objects.select_for_update().get(pk=message.pk)
        if current.status == status:
            return False
        if STATUS_RANK.get(status, 0) < STATUS_RANK.get(current.status, 0):
            return False
        current.status = status
        if status in (Message.Status.FAILED, Message.Status.UNDELIVERED):
            current.error = error or current.error or f"The provider reported {status}."
        current.save(update_fields=["status", "error", "updated_at"])
    message.status = current.status
    message.error = current.error
    message.crm_logs = current.crm_logs
    if message.crm_logs:
        message_crm_log_update(message=message)
    return True


# --- CRM logging and callbacks ----------------------------------------------------------------


def _crm_installations(organization_id: int) -> QuerySet[Installation]:
    return Installation.objects.filter(
        organization_id=organization_id,
        status=Installation.Status.ACTIVE,
        spec_version__spec__spec_class=IntegrationSpec.SpecClass.CRM,
    ).select_related("spec_version__spec", "organization")


def message_log_values(message: Message) -> dict[str, Any]:
    """System values of a message for CreateMessageLog (DESIGN 4.2, SMS)."""
    external = message.from_number if message.direction == "inbound" else message.to_number
    values: dict[str, Any] = {
        "from": message.from_number,
        "to": message.to_number,
        "content": message.content,
        "text": message.content,
        "messageid": message.messageid or message.message_ref,
        "message_ref": message.message_ref,
        "status": message.status,
        "phone": external,
        "call_direction": message.direction,
    }
    if message.media_urls:
        values["url"] = message.media_urls[0]
    if message.sender is not None:
        values["extension"] = message.sender.extension
    return values


def message_crm_log(*, message: Message) -> list[str]:
    """Log `message` to every active CRM installation of its organization whose spec has
    `CreateMessageLog`; returns the activity ids created.

    The contact is looked up first when the spec has `FindContact` (its first record's
    `contact_id` is passed on). A permanent failure of one CRM is logged in its delivery log
    and does not stop the others; a transient one is raised (IntegrationError) after the
    others ran, so the inbox retries the event.

    Each success is remembered at once in `Message.crm_logs` (installation id → activity
    id), so a retry logs the message only to the CRMs still missing it, and a crash between
    two CRMs neither loses nor duplicates a log.
    """
    created: list[str] = []
    transient: IntegrationError | None = None
    logged = _message_crm_logs(message)
    for installation in _crm_installations(message.organization_id):
        if str(installation.pk) in logged:
            continue
        spec = installation_spec(installation)
        if not spec.has_method("CreateMessageLog"):
            continue
        connection = installation_connection(installation)
        values = message_log_values(message)
        user_id = _crm_user_for(installation, message)
        if user_id:
            values["user_id"] = user_id
        try:
            if spec.has_method("FindContact"):
                found = connection.client.call("FindContact", {"phone": values["phone"]})
                if found.records:
                    values.update(
                        {k: v for k, v in found.records[0].items() if k.startswith("contact_")}
                    )
            result = connection.client.call("CreateMessageLog", values)
        except IntegrationError as exc:
            connection.log.record_failure(exc.message)
            if exc.auth_failed:
                installation_needs_reconnect(installation=installation, message=exc.message)
            elif not exc.permanent:
                transient = exc
            continue
        except SpecError as exc:
            logger.warning("CreateMessageLog of %s: spec problem: %s", installation, exc)
            continue
        first = result.first()
        activity_id = first.get("activity_id")
        activity_id = "" if activity_id in (None, "") else str(activity_id)
        # Remembered even without an id (the CRM answered none): it is logged there.
        logged = _message_crm_log_store(message, installation.pk, activity_id)
        connection.log.record_result(first)
        if activity_id:
            created.append(activity_id)
    if transient is not None:
        raise transient
    return created


def _message_crm_logs(message: Message) -> dict[str, str]:
    """The message's CRM logs as stored now (another worker may have added some)."""
    stored = Message.objects.filter(pk=message.pk).values_list("crm_logs", flat=True).first()
    message.crm_logs = dict(stored or {})
    return message.crm_logs


def _message_crm_log_store(
    message: Message, installation_id: int, activity_id: str
) -> dict[str, str]:
    """Add one CRM log to the message row (locked, merged with what is stored)."""
    with transaction.atomic():
        current = Message.objects.select_for_update().only("pk", "crm_logs").get(pk=message.pk)
        logs = dict(current.crm_logs or {})
        logs[str(installation_id)] = activity_id
        Message.objects.filter(pk=message.pk).update(crm_logs=logs)
    message.crm_logs = logs
    return logs


def message_crm_log_update(*, message: Message) -> list[str]:
    """Send the message's current values (status, content, ...) to every CRM it is logged to
    whose spec has `UpdateMessageLog`, with the `activity_id` CreateMessageLog returned;
    returns the activity ids updated.

    Called when the delivery status changes. A CRM that is no longer active, has no
    UpdateMessageLog or answered no activity id is left alone. Failures are recorded in that
    installation's delivery log and do not stop the others or undo the status change (the
    next status change sends the values again).
    """
    logged = {k: v for k, v in _message_crm_logs(message).items() if v}
    if not logged:
        return []
    updated: list[str] = []
    installations = _crm_installations(message.organization_id).filter(
        pk__in=[int(k) for k in logged if k.isdigit()]
    )
    for installation in installations:
        spec = installation_spec(installation)
        if not spec.has_method("UpdateMessageLog"):
            continue
        activity_id = logged[str(installation.pk)]
        connection = installation_connection(installation)
        values = message_log_values(message)
        values["activity_id"] = activity_id
        user_id = _crm_user_for(installation, message)
        if user_id:
            values["user_id"] = user_id
        try:
            result = connection.client.call("UpdateMessageLog", values)
        except IntegrationError as exc:
            connection.log.record_failure(exc.message)
            if exc.auth_failed:
                installation_needs_reconnect(installation=installation, message=exc.message)
            logger.warning(
                "UpdateMessageLog of message %s in %s failed: %s", message.pk, installation, exc
            )
            continue
        except SpecError as exc:
            logger.warning("UpdateMessageLog of %s: spec problem: %s", installation, exc)
            continue
        connection.log.record_result(result.first())
        updated.append(activity_id)
    return updated


def _crm_user_for(installation: Installation, message: Message) -> str | None:
    """The CRM user id of the message's PBX user (sender, or the number's first user)."""
    from integrations.models import UserMapping

    pbx_user_id = message.sender_id
    if pbx_user_id is None and message.sms_number_id is not None:
        first = message.sms_number.users.order_by("pk").first() if message.sms_number else None
        pbx_user_id = first.pk if first else None
    if pbx_user_id is None:
        return None
    mapping = (
        UserMapping.objects.filter(installation=installation, pbx_user_id=pbx_user_id)
        .select_related("crm_user")
        .first()
    )
    return mapping.crm_user.external_id if mapping and mapping.crm_user else None


def message_callback_payload(message: Message) -> dict[str, Any]:
    """The `sms` callback body: RingRx's SMS callback fields (from, to, message, timestamp,
    uuid) plus media URLs and the extensions the number is assigned to."""
    users = list(message.sms_number.users.order_by("extension")) if message.sms_number else []
    return {
        "from": message.from_number,
        "to": message.to_number,
        "message": message.content,
        "timestamp": message.created_at.isoformat(timespec="seconds"),
        "uuid": message.messageid or message.message_ref,
        "media_urls": list(message.media_urls or []),
        "extensions": [u.extension for u in users],
        "organization_id": message.organization_id,
    }


def message_status_payload(message: Message) -> dict[str, Any]:
    """The `message_status` callback body."""
    return {
        "message_ref": message.message_ref,
        "messageid": message.messageid,
        "from": message.from_number,
        "to": message.to_number,
        "status": message.status,
        "error": message.error,
        "timestamp": timezone.now().isoformat(timespec="seconds"),
        "organization_id": message.organization_id,
    }


def message_forward(*, message: Message, event: InboxEvent | None = None) -> None:
    """Forward an inbound message to the organization's `sms` callbacks."""
    from integrations.callbacks import callbacks_dispatch

    payload = message_callback_payload(message)
    tokens = {k: payload[k] for k in ("from", "to", "message", "timestamp", "uuid")}
    callbacks_dispatch(
        organization=message.organization,
        callback_type="sms",
        payload=payload,
        tokens=tokens,
        source_event=event,
    )


def message_status_forward(*, message: Message, event: InboxEvent | None = None) -> None:
    """Forward a status change to the organization's `message_status` callbacks."""
    from integrations.callbacks import callbacks_dispatch

    payload = message_status_payload(message)
    tokens = {
        k: payload[k] for k in ("message_ref", "messageid", "from", "to", "status", "timestamp")
    }
    callbacks_dispatch(
        organization=message.organization,
        callback_type="message_status",
        payload=payload,
        tokens=tokens,
        source_event=event,
    )


# --- Reads --------------------------------------------------------------------------------


def message_list(
    *,
    user: object,
    organization: Organization,
    sms_number: SmsNumber | None = None,
    conversation: str | None = None,
) -> QuerySet[Message]:
    """Messages of `organization` the user may see, newest first; `conversation` is the
    external party's number (E.164 or national in the org's region)."""
    qs = Message.objects.for_user(user).filter(organization=organization)
    if sms_number is not None:
        qs = qs.filter(sms_number=sms_number)
    if conversation:
        try:
            number = phone_to_e164(conversation, region=organization.default_region)
        except ValidationError:
            number = conversation
        qs = qs.filter(
            Q(direction=Message.Direction.INBOUND, from_number=number)
            | Q(direction=Message.Direction.OUTBOUND, to_number=number)
        )
    return qs.select_related("sms_number", "sender").order_by("-created_at", "-pk")


@dataclass
class Conversation:
    """One thread of an SMS number: the external party and its latest message."""

    external_number: str
    last: Message
    count: int


def conversation_list(*, user: object, sms_number: SmsNumber) -> list[Conversation]:
    """Threads of `sms_number` by external number, most recent first."""
    threads: dict[str, Conversation] = {}
    messages = (
        Message.objects.for_user(user)
        .filter(sms_number=sms_number)
        .order_by("-created_at", "-pk")
        .only("from_number", "to_number", "direction", "content", "status", "created_at")[:2000]
    )
    for message in messages:
        external = (
            message.from_number
            if message.direction == Message.Direction.INBOUND
            else message.to_number
        )
        thread = threads.get(external)
        if thread is None:
            threads[external] = Conversation(external, message, 1)
        else:
            thread.count += 1
    return list(threads.values())


# --- Admin re-runs: send a failed message again, log a message to the CRM again ---------------

# Messages whose CRM log is written (outbound once sent, inbound once received).
CRM_LOGGED_STATUSES = frozenset(
    {
        Message.Status.SENT,
        Message.Status.DELIVERED,
        Message.Status.RECEIVED,
    }
)
# Inbound messages are logged by their inbox event's handler: while it may still run (or run
# again by itself) the log is not "failed".
_INBOX_FINISHED = (InboxEvent.State.DONE, InboxEvent.State.FAILED, InboxEvent.State.IGNORED)


def message_crm_log_installations(*, organization_id: int) -> list[Installation]:
    """The organization's active CRM installations whose spec has CreateMessageLog."""
    return [
        installation
        for installation in _crm_installations(organization_id)
        if installation_spec(installation).has_method("CreateMessageLog")
    ]


def message_crm_log_missing(
    *, message: Message, crm_installations: Sequence[Installation] | None = None
) -> list[Installation]:
    """The CRM installations that should have a log of `message` and do not: active, with
    CreateMessageLog, installed before the message arrived or was sent, and absent from
    `Message.crm_logs`. A page listing many messages passes `crm_installations`
    (`message_crm_log_installations`) and the messages as it read them; otherwise both are
    read now."""
    if crm_installations is None:
        crm_installations = message_crm_log_installations(organization_id=message.organization_id)
        logged = _message_crm_logs(message)
    else:
        logged = dict(message.crm_logs or {})
    return [
        installation
        for installation in crm_installations
        if installation.created_at <= message.created_at and str(installation.pk) not in logged
    ]


def message_crm_log_failed(
    *, message: Message, crm_installations: Sequence[Installation] | None = None
) -> bool:
    """Whether the CRM log of a sent or received message failed for good: it is no longer
    due (nor retried by its inbox event) and a CRM that should have it does not."""
    if message.status not in CRM_LOGGED_STATUSES or message.crm_log_due_at is not None:
        return False
    if not message_crm_log_missing(message=message, crm_installations=crm_installations):
        return False
    if message.direction == Message.Direction.INBOUND and message.message_ref.startswith("in-"):
        event_id = message.message_ref.removeprefix("in-")
        state = (
            InboxEvent.objects.filter(pk=event_id).values_list("state", flat=True).first()
            if event_id.isdigit()
            else None
        )
        if state is not None and state not in _INBOX_FINISHED:
            return False
    return True


def message_resend_action(
    *, message: Message, crm_installations: Sequence[Installation] | None = None
) -> str:
    """What `message_resend` would do: ``"send"`` (a failed outbound message), ``"crm_log"``
    (a sent or received message whose CRM log failed for good) or ``""`` (nothing)."""
    if message.direction == Message.Direction.OUTBOUND and message.status == Message.Status.FAILED:
        return "send"
    if message_crm_log_failed(message=message, crm_installations=crm_installations):
        return "crm_log"
    return ""


def message_resend(*, message: Message) -> Message:
    """An admin's "Send again" / "Log to CRM again".

    * A `failed` outbound message is queued again: attempts reset to 0 (a fresh run of
      MESSAGE_SEND_MAX_ATTEMPTS), due now, its error cleared, and sent when the transaction
      commits through the same path as a new message (`message_send_task`). Its
      `message_ref` stays, so a late status report still finds it.
    * A sent or received message whose CRM log failed for good (`message_crm_log_failed`) is
      logged again to the CRMs missing it (those done already are skipped), when the
      transaction commits (`message_crm_log_task`).

    Raises:
        ValidationError: anything else (an inbound message, a message not failed), or the
            number's SMS integration cannot send (removed, disabled, needs reconnecting).
    """
    failed_outbound = (
        message.direction == Message.Direction.OUTBOUND and message.status == Message.Status.FAILED
    )
    if not failed_outbound:
        if message_crm_log_failed(message=message):
            now = timezone.now()
            with transaction.atomic():
                Message.objects.filter(pk=message.pk, crm_log_due_at__isnull=True).update(
                    crm_log_due_at=now, updated_at=now
                )
                transaction.on_commit(partial(message_crm_log_enqueue, message_id=message.pk))
            message.refresh_from_db()
            return message
        if message.direction == Message.Direction.INBOUND:
            raise ValidationError(
                {
                    "message": "An inbound message cannot be sent again; only its CRM log can be "
                    "re-run, and it is not failed."
                }
            )
        raise ValidationError(
            {
                "message": f"Only a failed message can be sent again (this one is "
                f"{message.get_status_display().lower()})."
            }
        )
    installation = message.installation
    if installation is None:
        raise ValidationError(
            {
                "message": "The SMS integration of this message was removed: send a new message "
                "from a number bound to an SMS integration."
            }
        )
    if installation.status != Installation.Status.ACTIVE:
        raise ValidationError(
            {
                "message": f"The SMS integration of {message.from_number} is "
                f"{installation.get_status_display().lower()}: reconnect or enable it, then "
                "send the message again."
            }
        )
    now = timezone.now()
    with transaction.atomic():
        updated = Message.objects.filter(
            pk=message.pk,
            direction=Message.Direction.OUTBOUND,
            status=Message.Status.FAILED,
        ).update(
            status=Message.Status.QUEUED,
            attempts=0,
            next_attempt_at=now,
            error="",
            updated_at=now,
        )
        if not updated:
            raise ValidationError({"message": "This message was sent again meanwhile."})
        transaction.on_commit(partial(message_send_enqueue, message_id=message.pk))
    message.refresh_from_db()
    return message
