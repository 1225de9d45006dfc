"""Call logging: PBX call events in, one CRM activity per call and installation out.

Flow (DESIGN 4.5, issue 5 item 3)::

    inbox handler (pbx/call, pbx/cdr, pbx/recording)
        └─ call_event_apply()        merge the event into the Call row (order-insensitive)
        └─ call_log_dispatch()       one CallActivity row + one call_log_task per active CRM
                                     installation of the organization (a row failed as
                                     "needs reconnecting" for one that needs reconnecting)
    call_log_task(installation_id, call_id)          (integrations.call_logging_tasks)
        └─ call_log_to_installation()   bring the CRM up to date with the Call, idempotently

**Order-insensitive, idempotent.** The Call row is the merged truth: its status only moves
forward (ringing → answered → completed/missed/busy/failed) and an event of an earlier status only
fills fields still missing, so events arriving twice or out of order converge on the same row.
`call_log_to_installation` does not replay events: it compares what the CRM was already told
(kept on the CallActivity row) with the Call as it is now and sends only what is missing:

* the lookup — `FindContact` (phone = the external party, E.164) once; an unknown caller gets a
  contact (`CreateContact`) when the installation creates contacts; several matches follow the
  installation's `match_policy` (owner / recent / earliest / all / review → *held*);
* real-time notifications of event-style CRMs (Zoho PhoneBridge) while the call is live:
  `CallRinging` (inbound) or `CallDialed` (outbound), then `CallAnswered` — each once;
* the first loggable moment (answered, missed or ended) → `CreateActivity` exactly once (one per
  contact with the *all* policy); afterwards `UpdateActivity` whenever the call's data changed
  since it was last written. With `GetActivity`, fields edited in the CRM since we wrote them are
  sent back as the CRM has them, never overwritten;
* event-style CRMs get `CallEnded` (or `CallMissed` for an inbound call not answered) once;
* a recording → `UploadRecording` once (`recording_url` and `recording_file` = the URL).

**Exactly once, even with two workers.** One run per (installation, call) at a time: a
PostgreSQL advisory lock (released with the connection if the worker dies) serializes runs, the
CallActivity row is read under ``SELECT … FOR UPDATE`` and is unique per (installation, call).
The CRM requests happen outside any long transaction, so refreshed OAuth tokens and delivery log
rows are committed at once and progress (an activity id) is saved right after each step.

Bookkeeping on CallActivity: `written` is ``{"activities": {activity_id: values we last wrote},
"sync": {"steps": [...], "fingerprint": ..., "other_contact_ids": [...], "protected": {...}}}``.

**Nothing lost with a message.** Every request to bring an activity up to date (new call data,
a retry, a resolved review, a reconnection) bumps `CallActivity.sync_requests` and sets
`next_attempt_at` (now, or when a retry is due); a run clears it once the CRM has the call as
read under the lock, unless another request arrived meanwhile. `call_activity_sweep` (beat and
`manage.py sweep`) re-enqueues activities overdue by INBOX_STUCK_AFTER_SECONDS: a lost task
message, a retry that could not be published, a worker killed mid-task.

Errors: a transient `IntegrationError` leaves the row as it is (with `last_error`) and tells the
task to retry; `auth_failed` marks the installation *needs reconnect* with a notice (and an email
when EMAIL_HOST is set; `installation_needs_reconnect`, shared with messaging) and fails the
activity as waiting for the reconnection; other permanent errors and spec mistakes fail the
activity with the message. `call_activity_retry` runs a failed activity again. Calls arriving
while an installation needs reconnecting get their activity too, failed with `RECONNECT_ERROR`;
`call_activities_resume` logs them once it is active again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import F, Prefetch, QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone

from integrations.connections import Connection, installation_connection, installation_spec
from integrations.engine.errors import IntegrationError, SpecError
from integrations.inbox import PUBLISH_RETRY_POLICY, InboxRetryLater, inbox_handler
from integrations.models import (
    Call,
    CallActivity,
    DeliveryLogEntry,
    InboxEvent,
    Installation,
    IntegrationSpec,
    Notice,
    UserMapping,
)
from integrations.services import installation_needs_reconnect
from tenants.models import Organization, PbxUser

logger = logging.getLogger(__name__)

STATUS_RANK: dict[str, int] = {
    "ringing": 0,
    "answered": 1,
    "completed": 2,
    "missed": 2,
    "busy": 2,
    "failed": 2,
}
FINAL_STATUSES = frozenset({"completed", "missed", "busy", "failed"})
# Fields of the normalized call event kept on Call.data.
CALL_FIELDS = (
    "direction",
    "caller_number",
    "caller_name",
    "called_number",
    "called_name",
    "extension",
    "start",
    "answer",
    "end",
    "duration",
    "recording_url",
)
EVENT_STYLE_METHODS = ("CallRinging", "CallDialed", "CallAnswered", "CallEnded", "CallMissed")
# Record keys that may hold a contact's owner, its update and creation times (spec captures).
OWNER_KEYS = ("owner_id", "contact_owner_id", "user_id")
UPDATED_KEYS = ("contact_updated", "updated_at", "modified_at")
CREATED_KEYS = ("contact_created", "created_at")
# Contact fields kept as candidates on the row (for the review page), per record.
CANDIDATE_KEYS = (
    "contact_id",
    "contact_name",
    "contact_first_name",
    "contact_last_name",
    "contact_email",
    "contact_phone",
    "contact_company",
    "account_id",
    *OWNER_KEYS,
    *UPDATED_KEYS,
    *CREATED_KEYS,
)
MAX_CANDIDATES = 25
RECENT_CALLS_LIMIT = 200


# --- Merging events into the Call row ---------------------------------------------------------


def _iso_utc(value: Any) -> str | None:
    """`value` (ISO 8601 text or a datetime) as ``YYYY-MM-DDTHH:MM:SSZ``; None if unreadable."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def external_party(data: dict[str, Any]) -> Any:
    """The number of the party outside the organization (DESIGN 4.2 `phone`)."""
    if data.get("direction") == "outbound":
        return data.get("called_number")
    return data.get("caller_number")


def call_event_apply(*, organization: Organization, event: dict[str, Any]) -> Call:
    """Merge one normalized call event (`integrations/schemas/call_event.json` fields, numbers
    already E.164) into the organization's Call row, creating it on the first event.

    The status only moves forward (`STATUS_RANK`); an event whose status is at least as
    advanced as the call's overwrites the fields it carries, an earlier one only fills fields
    still empty. So the same events in any order, or twice, give the same row. Runs under
    ``SELECT … FOR UPDATE`` of the row. Raises ValidationError without a `call_id`.
    """
    call_id = str(event.get("call_id") or "").strip()
    if not call_id:
        raise ValidationError({"call_id": "A call event needs a call_id."})
    status = str(event.get("status") or "")
    new_rank = STATUS_RANK.get(status, -1)
    with transaction.atomic():
        call, _created = Call.objects.select_for_update().get_or_create(
            organization=organization, call_id=call_id[:200]
        )
        old_rank = STATUS_RANK.get(call.status, -1)
        data = dict(call.data or {})
        for name in CALL_FIELDS:
            value = event.get(name)
            if value in (None, ""):
                continue
            if name in ("start", "answer", "end"):
                value = _iso_utc(value)
                if value is None:
                    continue
            if name == "extension":
                value = str(value)
            if data.get(name) in (None, "") or new_rank >= old_rank:
                data[name] = value
        data["phone"] = external_party(data)
        if new_rank > old_rank:
            call.status = status
        call.data = data
        call.save(update_fields=["status", "data", "updated_at"])
    return call


def call_event_from_cdr(normalized: dict[str, Any]) -> dict[str, Any] | None:
    """A call event from a RingRx CDR or recording callback (`ringrx_normalize` output).

    A CDR arrives once the call is over: its status is `completed` when it was talked
    (`bill_duration` > 0, or `duration` without a billed time) and `missed` otherwise; `end`
    is start + duration, `duration` the talk time. Internal calls (between extensions) are not
    logged to CRMs: None.
    """
    direction = normalized.get("direction")
    if direction not in ("inbound", "outbound") or not normalized.get("call_id"):
        return None
    total = normalized.get("duration")
    talk = normalized.get("bill_duration")
    answered = (talk or 0) > 0 if talk is not None else (total or 0) > 0
    start = _iso_utc(normalized.get("start"))
    event: dict[str, Any] = {
        "call_id": str(normalized["call_id"]),
        "direction": direction,
        "status": "completed" if answered else "missed",
        "caller_number": normalized.get("caller_number"),
        "caller_name": normalized.get("caller_name"),
        "called_number": normalized.get("called_number"),
        "extension": normalized.get("extension"),
        "start": start,
        "duration": (talk if talk is not None else total) if answered else 0,
        "recording_url": normalized.get("recording_url"),
    }
    if start and total is not None:
        moment = datetime.fromisoformat(start.replace("Z", "+00:00"))
        end = moment + timedelta(seconds=int(total))
        event["end"] = _iso_utc(end)
        if answered and talk is not None:
            event["answer"] = _iso_utc(end - timedelta(seconds=int(talk)))
    return event


# --- Which installations log calls -------------------------------------------------------------


def call_log_installations(
    *, organization: Organization, include_needs_reconnect: bool = False
) -> list[Installation]:
    """The organization's active CRM installations whose spec logs calls (and, with
    `include_needs_reconnect`, those waiting to be reconnected)."""
    statuses = [Installation.Status.ACTIVE]
    if include_needs_reconnect:
        statuses.append(Installation.Status.NEEDS_RECONNECT)
    found = []
    for installation in (
        Installation.objects.filter(
            organization=organization,
            status__in=statuses,
            spec_version__spec__spec_class=IntegrationSpec.SpecClass.CRM,
        )
        .select_related("spec_version__spec", "organization")
        .order_by("pk")
    ):
        try:
            spec = installation_spec(installation)
        except SpecError:
            continue
        if any(spec.has_method(m) for m in ("CreateActivity", "CallEnded", "CallMissed")):
            found.append(installation)
    return found


def call_log_enqueue(*, installation_id: int, call_id: str) -> None:
    """Send `call_log_task(installation_id, call_id)` to the broker (run it now when eager).

    Raises whatever the broker raises when it cannot take the message: the inbox handler turns
    that into a retry of the event, so nothing is lost.
    """
    from integrations.call_logging_tasks import call_log_task

    call_log_task.apply_async(
        args=[installation_id, call_id], retry=True, retry_policy=PUBLISH_RETRY_POLICY
    )


RECONNECT_ERROR = (
    "Not logged: the integration needs reconnecting. Reconnect it on its page; the call is "
    "logged as soon as it is connected again."
)


def call_activity_sync_request(*, activity_pk: int, due: datetime | None = None) -> None:
    """Record that the activity's CRM is behind the call (new data, a retry, a resolved
    review): due at `due` (default now). Until a run catches up, the sweeper re-enqueues it
    once it is overdue (`call_activity_sweep`)."""
    CallActivity.objects.filter(pk=activity_pk).update(
        sync_requests=F("sync_requests") + 1,
        next_attempt_at=due or timezone.now(),
        updated_at=timezone.now(),
    )


def call_activity_schedule(*, activity_pk: int, delay_seconds: float) -> None:
    """The next attempt of the activity is due in `delay_seconds` (a retry's countdown): the
    sweeper leaves it alone until then, and takes it over if the retry's message is lost."""
    CallActivity.objects.filter(pk=activity_pk).update(
        next_attempt_at=timezone.now() + timedelta(seconds=max(0.0, float(delay_seconds)))
    )


def _activity_waiting_for_reconnect(activity: CallActivity, message: str) -> None:
    """Failed because the integration needs reconnecting; run again by
    `call_activities_resume` once it is active (a held activity stays held)."""
    if activity.state == CallActivity.State.HELD:
        CallActivity.objects.filter(pk=activity.pk).update(
            last_error=message[:4000], next_attempt_at=None, updated_at=timezone.now()
        )
        return
    CallActivity.objects.filter(pk=activity.pk).update(
        state=CallActivity.State.FAILED,
        last_error=message[:4000],
        waiting_for_reconnect=True,
        next_attempt_at=None,
        updated_at=timezone.now(),
    )
    activity.state = CallActivity.State.FAILED
    activity.last_error = message
    activity.waiting_for_reconnect = True


def call_log_dispatch(*, call: Call) -> list[CallActivity]:
    """Make sure every logging installation of the call's organization has its CallActivity
    row, and enqueue the per-installation work. Idempotent.

    An installation that needs reconnecting gets its row too, failed with `RECONNECT_ERROR`
    (nothing is sent to it); `call_activities_resume` logs those calls once it is active.
    """
    activities = []
    for installation in call_log_installations(
        organization=call.organization, include_needs_reconnect=True
    ):
        activity, _ = CallActivity.objects.get_or_create(installation=installation, call=call)
        activities.append(activity)
        if installation.status != Installation.Status.ACTIVE:
            _activity_waiting_for_reconnect(activity, RECONNECT_ERROR)
            # Reconnected meanwhile (its resume may have run before this row was marked).
            installation.refresh_from_db(fields=["status"])
            if installation.status == Installation.Status.ACTIVE:
                call_activities_resume(installation=installation)
            continue
        call_activity_sync_request(activity_pk=activity.pk)
        call_log_enqueue(installation_id=installation.pk, call_id=call.call_id)
    return activities


def call_activity_sweep(*, stuck_after_seconds: float | None = None, limit: int = 500) -> list[int]:
    """Enqueue again the activities whose CRM is still behind the call
    `stuck_after_seconds` (default INBOX_STUCK_AFTER_SECONDS) after their work was due: the
    task's message was lost (or its retry could not be published), or its worker was killed.
    Running one twice is harmless (`call_log_to_installation` is idempotent and serialized).
    Each one enqueued is due again from now, so a slow queue is not flooded. Returns the ids
    enqueued, oldest due first; stops at the first broker error (the next sweep tries again).
    """
    if stuck_after_seconds is None:
        stuck_after_seconds = settings.INBOX_STUCK_AFTER_SECONDS
    now = timezone.now()
    cutoff = now - timedelta(seconds=stuck_after_seconds)
    due = list(
        CallActivity.objects.filter(next_attempt_at__lte=cutoff)
        .order_by("next_attempt_at", "pk")
        .values_list("pk", "installation_id", "call__call_id")[:limit]
    )
    enqueued: list[int] = []
    for activity_pk, installation_id, call_id in due:
        CallActivity.objects.filter(pk=activity_pk, next_attempt_at__lte=cutoff).update(
            next_attempt_at=now
        )
        try:
            call_log_enqueue(installation_id=installation_id, call_id=call_id)
        except Exception as exc:  # the broker is down: the next sweep tries again
            CallActivity.objects.filter(pk=activity_pk).update(next_attempt_at=cutoff)
            logger.warning("call activity sweep: enqueue failed (%s); stopping", exc)
            break
        enqueued.append(activity_pk)
    if enqueued:
        logger.warning("call activity sweep: re-enqueued %d activity(ies)", len(enqueued))
    return enqueued


def _enqueue_quietly(installation_id: int, call_id: str) -> None:
    """Enqueue after a commit; a broker that is down is left to the sweeper (the activity
    is due)."""
    try:
        call_log_enqueue(installation_id=installation_id, call_id=call_id)
    except Exception as exc:
        logger.warning("call %s: call logging not enqueued (%s); the sweeper will", call_id, exc)


def call_activities_resume(*, installation: Installation) -> list[int]:
    """The installation is active again: log the calls that failed because it needed
    reconnecting (enqueued when the transaction commits). Returns their ids; does nothing
    unless the installation is active.

    `integrations.services.installation_reactivate` calls it wherever an installation
    becomes active again (OAuth connected, credentials fixed, a connection test passed).
    """
    if installation.status != Installation.Status.ACTIVE:
        return []
    with transaction.atomic():
        rows = list(
            CallActivity.objects.select_for_update()
            .filter(
                installation_id=installation.pk,
                state=CallActivity.State.FAILED,
                waiting_for_reconnect=True,
            )
            .values_list("pk", "call__call_id")
        )
        if not rows:
            return []
        now = timezone.now()
        CallActivity.objects.filter(pk__in=[pk for pk, _ in rows]).update(
            state=CallActivity.State.PENDING,
            last_error="",
            waiting_for_reconnect=False,
            sync_requests=F("sync_requests") + 1,
            next_attempt_at=now,
            updated_at=now,
        )
        for _pk, call_id in rows:
            transaction.on_commit(partial(_enqueue_quietly, installation.pk, call_id))
    logger.info("installation %s reconnected: logging %d call(s)", installation.pk, len(rows))
    return [pk for pk, _ in rows]


def _call_event_handle(event: InboxEvent, call_event: dict[str, Any] | None) -> None:
    if event.organization is None or not call_event:
        return
    call = call_event_apply(organization=event.organization, event=call_event)
    try:
        call_log_dispatch(call=call)
    except (InboxRetryLater, IntegrationError):
        raise
    except Exception as exc:  # the broker refused the message: the event is retried later
        logger.warning("call %s: call logging not enqueued (%s)", call.call_id, exc)
        raise InboxRetryLater(
            f"Call logging could not be queued ({type(exc).__name__}); retrying."
        ) from exc


@inbox_handler("pbx", "call")
def call_event_received(event: InboxEvent) -> None:
    """A normalized call event: merge it, log the call to every CRM."""
    _call_event_handle(event, dict(event.normalized or {}))


@inbox_handler("pbx", "cdr")
def call_cdr_received(event: InboxEvent) -> None:
    """A RingRx CDR: the call's final data."""
    _call_event_handle(event, call_event_from_cdr(dict(event.normalized or {})))


@inbox_handler("pbx", "recording")
def call_recording_received(event: InboxEvent) -> None:
    """A RingRx recording callback: the CDR with its recording URL."""
    _call_event_handle(event, call_event_from_cdr(dict(event.normalized or {})))


# --- The per-installation work ------------------------------------------------------------------


@dataclass
class CallLogOutcome:
    """What one run of `call_log_to_installation` did.

    `retry` is True after a transient failure (the task retries, waiting at least
    `retry_after` seconds when the CRM asked for it); `error` is the message shown to admins.
    """

    state: str
    activity_pk: int | None = None
    retry: bool = False
    retry_after: float | None = None
    error: str = ""


_local_locks: dict[tuple[int, int], threading.RLock] = {}
_local_locks_guard = threading.Lock()


@contextmanager
def call_lock(installation_id: int, call_pk: int) -> Iterator[None]:
    """One run per (installation, call) at a time, across processes.

    PostgreSQL: a session-level advisory lock, so the CRM requests happen outside any
    transaction and a killed worker's lock goes with its connection. Other databases (the
    SQLite embedded default, one process): a lock in this process.
    """
    if connection.vendor == "postgresql":
        digest = hashlib.sha256(f"call_log:{installation_id}:{call_pk}".encode()).digest()
        key = int.from_bytes(digest[:8], "big", signed=True)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [key])
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
        return
    with _local_locks_guard:
        lock = _local_locks.setdefault((installation_id, call_pk), threading.RLock())
    with lock:
        yield


def _duration_text(seconds: int | None) -> str:
    if seconds is None:
        return ""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _party(name: Any, number: Any) -> str:
    if name and number:
        return f"{name} ({number})"
    return str(name or number or "unknown")


def call_subject(call: Call) -> str:
    """A short title for the activity: "Inbound call from Jane Doe"."""
    data = call.data or {}
    if data.get("direction") == "outbound":
        return f"Outbound call to {data.get('called_name') or data.get('called_number') or '?'}"
    return f"Inbound call from {data.get('caller_name') or data.get('caller_number') or '?'}"


def call_note(call: Call) -> str:
    """The activity's description: who called whom, the outcome, the talk time."""
    data = call.data or {}
    caller = _party(data.get("caller_name"), data.get("caller_number"))
    called = _party(data.get("called_name"), data.get("called_number"))
    direction = "Outbound" if data.get("direction") == "outbound" else "Inbound"
    text = f"{direction} call from {caller} to {called}"
    if data.get("extension"):
        text += f", extension {data['extension']}"
    text += f". Status: {call.status or 'unknown'}."
    if call.status == "completed" and data.get("duration") is not None:
        text += f" Talk time {_duration_text(data.get('duration'))}."
    if data.get("recording_url"):
        text += f" Recording: {data['recording_url']}"
    return text


def call_system_values(call: Call) -> dict[str, Any]:
    """The call's system values (DESIGN 4.2 "Call"), None for what is unknown.

    `call_start` falls back to the answer time, then to when the portal first saw the call
    (CRMs such as Zoho require a start time); `call_duration` is the talk time in whole seconds,
    0 for a finished call that was not answered.
    """
    data = call.data or {}
    start = data.get("start") or data.get("answer") or _iso_utc(call.created_at)
    duration = data.get("duration")
    if duration is None and data.get("answer") and data.get("end"):
        answer = datetime.fromisoformat(str(data["answer"]).replace("Z", "+00:00"))
        end = datetime.fromisoformat(str(data["end"]).replace("Z", "+00:00"))
        duration = max(0, int((end - answer).total_seconds()))
    if duration is None and call.status in FINAL_STATUSES:
        duration = 0
    values: dict[str, Any] = {
        "call_id": call.call_id,
        "call_direction": data.get("direction") or "inbound",
        "call_status": call.status or "ringing",
        "call_start": _iso_utc(start),
        "call_answer": _iso_utc(data.get("answer")),
        "call_end": _iso_utc(data.get("end")),
        "call_duration": int(duration) if duration is not None else None,
        "caller_number": data.get("caller_number"),
        "caller_name": data.get("caller_name"),
        "called_number": data.get("called_number"),
        "phone": data.get("phone") or external_party(data),
        "extension": data.get("extension"),
        "domain": call.organization.pbx_domain or None,
        "recording_url": data.get("recording_url"),
        "note": call_note(call),
        "subject": call_subject(call),
    }
    return values


def call_user_values(*, installation: Installation, call: Call) -> dict[str, Any]:
    """The PBX user on the call (by extension) and the CRM user it is mapped to:
    `pbx_user_id` (the extension), `pbx_user_email`, `user_id`, `user_name`, `user_email`."""
    extension = (call.data or {}).get("extension")
    if not extension:
        return {}
    pbx_user = PbxUser.objects.filter(
        organization_id=call.organization_id, extension=str(extension)
    ).first()
    if pbx_user is None:
        return {}
    values: dict[str, Any] = {"pbx_user_id": pbx_user.extension}
    if pbx_user.email:
        values["pbx_user_email"] = pbx_user.email
    mapping = (
        UserMapping.objects.filter(
            installation=installation, pbx_user=pbx_user, crm_user__present=True
        )
        .select_related("crm_user")
        .first()
    )
    if mapping is not None and mapping.crm_user is not None:
        crm_user = mapping.crm_user
        for key, value in (
            ("user_id", crm_user.external_id),
            ("user_name", crm_user.name),
            ("user_email", crm_user.email),
        ):
            if value:
                values[key] = value
    return values


def _first(record: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if record.get(key) not in (None, ""):
            return record[key]
    return None


def _moment(value: Any) -> datetime | None:
    iso = _iso_utc(value)
    return datetime.fromisoformat(iso.replace("Z", "+00:00")) if iso else None


def contacts_choose(
    records: list[dict[str, Any]], *, policy: str, user_id: Any = None
) -> list[dict[str, Any]]:
    """The contacts to log to among several matches, by `Installation.MatchPolicy`.

    owner: the record owned by the mapped CRM user (else the most recently updated); recent:
    the latest updated; earliest: the earliest created; all: every record; review: [] (an admin
    picks). Records without the compared field come last.
    """
    if len(records) <= 1 or policy == Installation.MatchPolicy.ALL:
        return list(records)
    if policy == Installation.MatchPolicy.REVIEW:
        return []
    if policy == Installation.MatchPolicy.OWNER and user_id not in (None, ""):
        owned = [r for r in records if str(_first(r, OWNER_KEYS) or "") == str(user_id)]
        if owned:
            return owned[:1]
    if policy == Installation.MatchPolicy.EARLIEST:
        dated = [
            (m, i, r) for i, r in enumerate(records) if (m := _moment(_first(r, CREATED_KEYS)))
        ]
        if dated:
            return [min(dated, key=lambda item: (item[0], item[1]))[2]]
        return records[:1]
    dated = [(m, i, r) for i, r in enumerate(records) if (m := _moment(_first(r, UPDATED_KEYS)))]
    if dated:
        return [max(dated, key=lambda item: (item[0], -item[1]))[2]]
    return records[:1]


def _candidate(record: dict[str, Any]) -> dict[str, Any]:
    kept = {k: record[k] for k in CANDIDATE_KEYS if record.get(k) not in (None, "")}
    return json.loads(json.dumps(kept, default=str))


def _same(a: Any, b: Any) -> bool:
    return ("" if a is None else str(a)) == ("" if b is None else str(b))


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return json.loads(
        json.dumps({k: v for k, v in values.items() if v not in (None, "")}, default=str)
    )


def _method_uses(client: Any, method: str, name: str) -> bool:
    spec = client.spec
    marker = f"{{{name}}}" if spec.var_char == "{}" else f"${name}$"
    return marker in json.dumps(spec.raw.get("API", {}).get(method, {}))


class _Run:
    """One reconciliation of a CallActivity with its Call (holds the per-call lock)."""

    def __init__(
        self, installation: Installation, call: Call, activity: CallActivity, conn: Connection
    ) -> None:
        self.installation = installation
        self.call = call
        self.activity = activity
        self.conn = conn
        self.client = conn.client
        written = dict(activity.written or {})
        self.written_activities: dict[str, dict[str, Any]] = dict(written.get("activities") or {})
        self.sync: dict[str, Any] = dict(written.get("sync") or {})
        self.steps: list[str] = list(self.sync.get("steps") or [])
        self.values = {
            **call_system_values(call),
            **call_user_values(installation=installation, call=call),
        }

    # -- persistence -----------------------------------------------------------------------

    def save(self, *fields: str) -> None:
        self.sync["steps"] = self.steps
        self.activity.written = {"activities": self.written_activities, "sync": self.sync}
        names = {"written", "last_error", "updated_at", *fields}
        self.activity.last_error = ""
        with transaction.atomic():
            CallActivity.objects.select_for_update().filter(pk=self.activity.pk).exists()
            self.activity.save(update_fields=sorted(names))

    def call_method(self, method: str, params: dict[str, Any]) -> Any:
        result = self.client.call(method, params)
        self.conn.log.record_result(result.first())
        return result

    def has(self, method: str) -> bool:
        return self.client.has_method(method)

    # -- steps -----------------------------------------------------------------------------

    def contact_values(self, record: dict[str, Any] | None) -> dict[str, Any]:
        if not record:
            return {}
        return {k: v for k, v in record.items() if k.startswith("contact_") or k == "account_id"}

    def notify_live(self) -> None:
        """CallRinging / CallDialed / CallAnswered of event-style CRMs, while the call is live."""
        if self.call.status in FINAL_STATUSES:
            return
        inbound = self.values["call_direction"] != "outbound"
        ring_method = "CallRinging" if inbound else "CallDialed"
        if self.has(ring_method) and "ringing" not in self.steps and self.call.status == "ringing":
            result = self.call_method(ring_method, self.values)
            self.steps.append("ringing")
            if result.records and not self.activity.candidates:
                self.activity.candidates = [_candidate(r) for r in result.records][:MAX_CANDIDATES]
            self.save("candidates")
        answered = self.call.status == "answered" and "answered" not in self.steps
        if answered and self.has("CallAnswered"):
            self.call_method("CallAnswered", self.values)
            self.steps.append("answered")
            self.save()

    def lookup(self) -> bool:
        """FindContact once, then the contact(s) to log to; False when the activity is held."""
        if "lookup" in self.steps:
            return self.activity.state != CallActivity.State.HELD
        records: list[dict[str, Any]] = []
        phone = self.values.get("phone")
        if phone and self.has("FindContact"):
            records = list(self.call_method("FindContact", self.values).records)
        self.activity.candidates = [_candidate(r) for r in records][:MAX_CANDIDATES]
        chosen: list[dict[str, Any]] = []
        if not records:
            if self.installation.create_contacts and phone and self.has("CreateContact"):
                chosen = [self.create_contact()]
        else:
            chosen = contacts_choose(
                records,
                policy=self.installation.match_policy,
                user_id=self.values.get("user_id"),
            )
        self.steps.append("lookup")
        if records and not chosen:  # review: an admin picks
            self.activity.state = CallActivity.State.HELD
            self.save("candidates", "state")
            return False
        if chosen:
            self.activity.contact_id = str(chosen[0].get("contact_id") or "")
            self.sync["contact"] = _candidate(chosen[0])
            self.sync["other_contact_ids"] = [
                str(r["contact_id"]) for r in chosen[1:] if r.get("contact_id")
            ]
        self.save("candidates", "contact_id")
        return True

    def create_contact(self) -> dict[str, Any]:
        from integrations.lookup import lookup_cache_invalidate

        inbound = self.values["call_direction"] != "outbound"
        name = self.values.get("caller_name") if inbound else None
        if not name and not inbound:
            name = (self.call.data or {}).get("called_name")
        params = {**self.values, "contact_phone": self.values.get("phone")}
        if name:
            first, _, last = str(name).strip().rpartition(" ")
            params.update(
                contact_name=str(name),
                contact_first_name=first or None,
                contact_last_name=last or str(name),
            )
        result = self.call_method("CreateContact", params)
        created = result.first()
        lookup_cache_invalidate(installation=self.installation, phone=str(self.values["phone"]))
        record = {**_candidate(params), **_candidate(created)}
        self.activity.candidates = [record]
        self.sync["created_contact"] = str(record.get("contact_id") or "")
        return record

    def activity_params(self, contact: dict[str, Any] | None) -> dict[str, Any]:
        return {**self.values, **self.contact_values(contact)}

    def fingerprint(self) -> str:
        keys = sorted(k for k in self.values if k != "note")
        data = {k: self.values[k] for k in keys} | {"note": self.values.get("note")}
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()

    def contact_for(self, contact_id: str) -> dict[str, Any]:
        for record in self.activity.candidates or []:
            if str(record.get("contact_id") or "") == contact_id:
                return record
        return {"contact_id": contact_id} if contact_id else {}

    def create_activities(self) -> None:
        """CreateActivity once for the contact (and once per other contact with *all*)."""
        if not self.activity.activity_id:
            contact = self.contact_for(self.activity.contact_id)
            params = self.activity_params(contact)
            result = self.call_method("CreateActivity", params)
            captured = result.first()
            activity_id = str(captured.get("activity_id") or "")
            if not activity_id:
                raise IntegrationError(
                    "CreateActivity answered without an activity id; check the spec's "
                    "response_map (it must capture $activity_id$).",
                    method="CreateActivity",
                    permanent=True,
                )
            self.activity.activity_id = activity_id
            self.activity.state = CallActivity.State.CREATED
            self.written_activities[activity_id] = _jsonable({**params, **captured})
            self.sync["fingerprint"] = self.fingerprint()
            self.save("activity_id", "state")
        others = list(self.sync.get("other_contact_ids") or [])
        ids = list(self.activity.other_activity_ids or [])
        while len(ids) < len(others):
            contact = self.contact_for(others[len(ids)])
            params = self.activity_params(contact)
            captured = self.call_method("CreateActivity", params).first()
            other_id = str(captured.get("activity_id") or "")
            ids.append(other_id)
            self.activity.other_activity_ids = ids
            if other_id:
                self.written_activities[other_id] = _jsonable({**params, **captured})
            self.save("other_activity_ids")

    def update_activities(self) -> None:
        """UpdateActivity of every activity of the call when the call's data changed."""
        current_fingerprint = self.fingerprint()
        if self.sync.get("fingerprint") == current_fingerprint or not self.has("UpdateActivity"):
            return
        others = list(self.sync.get("other_contact_ids") or [])
        targets = [(self.activity.activity_id, self.activity.contact_id)]
        targets += list(zip(self.activity.other_activity_ids or [], others, strict=False))
        for activity_id, contact_id in targets:
            if activity_id:
                self.update_one(activity_id, self.contact_for(contact_id))
        self.sync["fingerprint"] = current_fingerprint
        self.save()

    def update_one(self, activity_id: str, contact: dict[str, Any]) -> None:
        previous = dict(self.written_activities.get(activity_id) or {})
        params = {**previous, **self.activity_params(contact), "activity_id": activity_id}
        protected_all: dict[str, list[str]] = dict(self.sync.get("protected") or {})
        protected = set(protected_all.get(activity_id) or [])
        if self.has("GetActivity"):
            current = self.call_method("GetActivity", {**params}).first()
            for name, value in current.items():
                if name == "activity_id" or value in (None, ""):
                    continue
                if name not in previous or not _same(previous[name], value):
                    protected.add(name)
            # Edited in the CRM since we wrote it (or never ours): send it back as it is there.
            for name in protected:
                if current.get(name) not in (None, ""):
                    params[name] = current[name]
            protected_all[activity_id] = sorted(protected)
            self.sync["protected"] = protected_all
        captured = self.call_method("UpdateActivity", params).first()
        ours = {k: v for k, v in params.items() if k not in protected}
        self.written_activities[activity_id] = _jsonable({**previous, **ours, **captured})

    def end_events(self) -> None:
        """CallEnded / CallMissed of event-style CRMs, once the call is over."""
        if self.call.status not in FINAL_STATUSES or "ended" in self.steps:
            return
        inbound = self.values["call_direction"] != "outbound"
        method = "CallEnded"
        if inbound and self.call.status != "completed" and self.has("CallMissed"):
            method = "CallMissed"
        if not self.has(method):
            return
        result = self.call_method(method, self.activity_params(self.sync.get("contact")))
        self.steps.append("ended")
        if self.values.get("recording_url") and _method_uses(self.client, method, "recording_url"):
            self.activity.recording_uploaded = True
        if result.records and not self.activity.contact_id:
            self.activity.contact_id = str(result.records[0].get("contact_id") or "")
        self.activity.state = CallActivity.State.CREATED
        self.save("state", "recording_uploaded", "contact_id")

    def upload_recording(self) -> None:
        """UploadRecording once the recording is known and the activity exists."""
        url = self.values.get("recording_url")
        if not url or self.activity.recording_uploaded or not self.has("UploadRecording"):
            return
        if self.has("CreateActivity"):
            if not self.activity.activity_id:
                return
            params = {
                **self.activity_params(self.sync.get("contact")),
                "activity_id": self.activity.activity_id,
            }
        elif "ended" in self.steps:
            params = dict(self.values)
        else:
            return
        params["recording_file"] = url
        self.call_method("UploadRecording", params)
        self.activity.recording_uploaded = True
        self.save("recording_uploaded")

    def execute(self) -> None:
        self.notify_live()
        loggable = STATUS_RANK.get(self.call.status, -1) >= 1
        if self.has("CreateActivity"):
            if not self.lookup():
                return  # held for review
            if loggable:
                self.create_activities()
                self.update_activities()
        self.end_events()
        self.upload_recording()
        if self.activity.state == CallActivity.State.FAILED:
            self.activity.state = (
                CallActivity.State.CREATED
                if self.activity.activity_id or "ended" in self.steps
                else CallActivity.State.PENDING
            )
            self.save("state")


def _activity_fail(activity: CallActivity, message: str) -> None:
    """Failed for good (an admin may retry it): nothing is due any more."""
    CallActivity.objects.filter(pk=activity.pk).update(
        state=CallActivity.State.FAILED,
        last_error=message[:4000],
        next_attempt_at=None,
        updated_at=timezone.now(),
    )
    activity.state = CallActivity.State.FAILED
    activity.last_error = message


def _log_failure(conn: Connection, message: str) -> None:
    """Put the actionable message on the last logged attempt that is still stored (an attempt
    logged inside a token refresh that failed was rolled back with it)."""
    for entry in reversed(conn.log.entries):
        if DeliveryLogEntry.objects.filter(pk=entry.pk).update(error=message):
            return


def call_log_to_installation(*, installation_id: int, call_id: str) -> CallLogOutcome:
    """Bring installation `installation_id`'s CRM up to date with the call `call_id` (the
    PBX's id, looked up in the installation's organization). Idempotent; see the module doc.

    Returns the outcome; never raises for a third party's failure. A transient one
    (`IntegrationError.permanent` False) leaves the activity as it was, with `last_error`, and
    asks for a retry; a permanent one marks it failed.
    """
    installation = (
        Installation.objects.select_related("organization", "spec_version__spec")
        .filter(pk=installation_id)
        .first()
    )
    if installation is None:
        return CallLogOutcome(state="skipped", error="The integration no longer exists.")
    call = (
        Call.objects.select_related("organization")
        .filter(organization_id=installation.organization_id, call_id=call_id)
        .first()
    )
    if call is None:
        return CallLogOutcome(state="skipped", error="The call no longer exists.")
    with call_lock(installation.pk, call.pk):
        # What was read before the lock may be stale: another run (or event) changed it while
        # this one waited.
        call.refresh_from_db(fields=["status", "data", "updated_at"])
        installation.refresh_from_db(fields=["status", "status_detail"])
        with transaction.atomic():
            activity, _ = CallActivity.objects.get_or_create(installation=installation, call=call)
            activity = CallActivity.objects.select_for_update().get(pk=activity.pk)
        # Requests to sync made from now on are not covered by this run.
        requested = activity.sync_requests
        if installation.status == Installation.Status.NEEDS_RECONNECT:
            _activity_waiting_for_reconnect(activity, RECONNECT_ERROR)
            return CallLogOutcome(
                state=activity.state, activity_pk=activity.pk, error=RECONNECT_ERROR
            )
        if installation.status != Installation.Status.ACTIVE:
            message = f"Not logged: the integration is {installation.get_status_display().lower()}."
            if installation.status_detail:
                message += f" {installation.status_detail}"
            CallActivity.objects.filter(pk=activity.pk).update(
                last_error=message[:4000], next_attempt_at=None
            )
            return CallLogOutcome(state=activity.state, activity_pk=activity.pk, error=message)
        conn: Connection | None = None
        try:
            conn = installation_connection(installation)
            _Run(installation, call, activity, conn).execute()
        except IntegrationError as exc:
            message = exc.message
            if conn is not None:
                _log_failure(conn, message)
            if exc.auth_failed:
                installation_needs_reconnect(installation=installation, message=message)
                _activity_waiting_for_reconnect(activity, message)
                return CallLogOutcome(state=activity.state, activity_pk=activity.pk, error=message)
            if exc.permanent:
                _activity_fail(activity, message)
                return CallLogOutcome(state=activity.state, activity_pk=activity.pk, error=message)
            CallActivity.objects.filter(pk=activity.pk).update(
                last_error=message[:4000], updated_at=timezone.now()
            )
            return CallLogOutcome(
                state=activity.state,
                activity_pk=activity.pk,
                retry=True,
                retry_after=exc.retry_after,
                error=message,
            )
        except SpecError as exc:
            message = f"The integration's spec cannot make this call: {exc}"
            _activity_fail(activity, message)
            return CallLogOutcome(state=activity.state, activity_pk=activity.pk, error=message)
        # Up to date with the call as read under the lock, unless more was asked meanwhile.
        CallActivity.objects.filter(pk=activity.pk, sync_requests=requested).update(
            next_attempt_at=None
        )
        activity.refresh_from_db()
        return CallLogOutcome(state=activity.state, activity_pk=activity.pk)


def call_activity_give_up(*, activity_id: int, message: str) -> CallActivity | None:
    """Mark the activity failed after the last retry (the admin may retry it)."""
    activity = CallActivity.objects.filter(pk=activity_id).first()
    if activity is None:
        return None
    _activity_fail(activity, message)
    return activity


def call_activity_retry(*, activity: CallActivity) -> CallActivity:
    """Run a failed (or pending) activity again: its error is cleared and the work enqueued
    when the transaction commits. Raises ValidationError for a created or held activity (a
    held one is resolved by picking the contact) or when the integration is not active."""
    if activity.state in (CallActivity.State.CREATED, CallActivity.State.HELD):
        raise ValidationError(
            {"state": f"Only a failed or pending activity can be retried (it is {activity.state})."}
        )
    installation = activity.installation
    if installation.status != Installation.Status.ACTIVE:
        raise ValidationError(
            {
                "installation": "The integration is "
                f"{installation.get_status_display().lower()}; reconnect it first."
            }
        )
    with transaction.atomic():
        CallActivity.objects.filter(pk=activity.pk).update(
            state=CallActivity.State.PENDING,
            last_error="",
            waiting_for_reconnect=False,
            updated_at=timezone.now(),
        )
        call_activity_sync_request(activity_pk=activity.pk)
        call_id = activity.call.call_id
        transaction.on_commit(
            lambda: call_log_enqueue(installation_id=installation.pk, call_id=call_id)
        )
    activity.refresh_from_db()
    return activity


def call_activity_resolve(*, activity: CallActivity, contact_id: str) -> CallActivity:
    """An admin picked the contact of a held activity: it is written now (enqueued when the
    transaction commits). `contact_id` must be one of its candidates. Raises ValidationError
    otherwise, or when the activity is not held."""
    contact_id = str(contact_id or "").strip()
    if activity.state != CallActivity.State.HELD:
        raise ValidationError({"state": "This activity is not waiting for a contact."})
    if contact_id not in {str(c.get("contact_id")) for c in activity.candidates or []}:
        raise ValidationError({"contact_id": "Pick one of the contacts that were found."})
    with call_lock(activity.installation_id, activity.call_id), transaction.atomic():
        locked = CallActivity.objects.select_for_update().get(pk=activity.pk)
        if locked.state != CallActivity.State.HELD:
            raise ValidationError({"state": "This activity was resolved meanwhile."})
        written = dict(locked.written or {})
        sync = dict(written.get("sync") or {})
        chosen = next(c for c in locked.candidates or [] if str(c.get("contact_id")) == contact_id)
        sync["contact"] = chosen
        sync["other_contact_ids"] = []
        written["sync"] = sync
        locked.written = written
        locked.contact_id = contact_id
        locked.state = CallActivity.State.PENDING
        locked.last_error = ""
        locked.save(update_fields=["written", "contact_id", "state", "last_error", "updated_at"])
        call_activity_sync_request(activity_pk=locked.pk)
    # Enqueued once the lock is released (at once outside a transaction, else on commit).
    installation_id, call_id = activity.installation_id, activity.call.call_id
    transaction.on_commit(
        lambda: call_log_enqueue(installation_id=installation_id, call_id=call_id)
    )
    activity.refresh_from_db()
    return activity


# --- Selectors ------------------------------------------------------------------------------------


def call_list(*, user: object, organization: Organization) -> QuerySet[Call]:
    """The organization's recent calls, newest first, with their activities and
    installations (tenant-scoped: another tenant's organization gives nothing)."""
    return (
        Call.objects.for_user(user)
        .filter(organization=organization)
        .prefetch_related(
            Prefetch(
                "activities",
                queryset=CallActivity.objects.select_related("installation__spec_version__spec"),
            )
        )
        .order_by("-created_at", "-pk")
    )


def call_get(*, user: object, organization: Organization, pk: int | str) -> Call:
    """One call of the organization that `user` may see; Http404 otherwise."""
    return get_object_or_404(call_list(user=user, organization=organization), pk=pk)


def call_activity_list(
    *, user: object, organization: Organization, state: str | None = None
) -> QuerySet[CallActivity]:
    """The organization's call activities, newest first, `state` filtering them."""
    qs = (
        CallActivity.objects.filter(
            call__organization=organization,
            call__organization__in=Organization.objects.for_user(user),
        )
        .select_related("call", "installation__spec_version__spec")
        .order_by("-created_at", "-pk")
    )
    if state:
        qs = qs.filter(state=state)
    return qs


def call_activities_held(*, user: object, organization: Organization) -> QuerySet[CallActivity]:
    """Activities held for an admin to pick the contact (the review page)."""
    return call_activity_list(user=user, organization=organization, state=CallActivity.State.HELD)


def call_activity_get(*, user: object, organization: Organization, pk: int | str) -> CallActivity:
    """One call activity of the organization that `user` may see; Http404 otherwise."""
    return get_object_or_404(call_activity_list(user=user, organization=organization), pk=pk)


def call_notices(*, user: object, organization: Organization) -> QuerySet[Notice]:
    """Unresolved notices about the organization's integrations that still need reconnecting."""
    return Notice.objects.for_user(user).filter(
        organization=organization,
        resolved_at__isnull=True,
        installation__status=Installation.Status.NEEDS_RECONNECT,
    )
