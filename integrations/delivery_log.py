"""The delivery log: reads per installation for the admin, and pruning by age.

Rows are written by `integrations.connections.DeliveryLogger` (one per attempt) with secrets
already redacted by the HTTP door. Reads here redact once more with the installation's
current secret values before anything is shown, so a secret entered after the row was written
(or a row written by another path) still never reaches a page or an API response.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Literal

from django.conf import settings
from django.db.models import QuerySet
from django.db.models.query import ModelIterable
from django.shortcuts import get_object_or_404
from django.utils import timezone

from integrations.engine.http import redact
from integrations.models import DeliveryLogEntry, Installation

DeliveryStatus = Literal["ok", "failed"]
STATUS_CHOICES: tuple[DeliveryStatus, ...] = ("ok", "failed")
# Rows deleted per statement when pruning, so a large backlog never locks the table for long.
PRUNE_BATCH_SIZE = 5000


class _RedactedEntries(ModelIterable):
    """Yields the entries of a queryset redacted (`delivery_log_entry_redact`), so every
    page or API response built from it is redacted however it is sliced or paginated. The
    secrets of each installation are decrypted once per evaluation."""

    def __iter__(self) -> Iterator[DeliveryLogEntry]:
        secrets_by_installation: dict[int | None, set[str]] = {}
        for entry in super().__iter__():
            key = entry.installation_id
            if key not in secrets_by_installation:
                secrets_by_installation[key] = _installation_secrets(entry.installation)
            yield _entry_redact(entry, secrets_by_installation[key])


def delivery_log_list(
    *, user: object, installation: Installation, status: DeliveryStatus | None = None
) -> QuerySet[DeliveryLogEntry]:
    """The installation's log, newest first; `status` "ok" or "failed" filters it. Its
    entries come out redacted like `delivery_log_get` (URL and error included).

    Starts from `DeliveryLogEntry.objects.for_user(user)`, so another tenant's rows never
    appear even if a foreign installation were passed.
    """
    qs = DeliveryLogEntry.objects.for_user(user).filter(installation=installation)
    if status == "ok":
        qs = qs.filter(ok=True)
    elif status == "failed":
        qs = qs.filter(ok=False)
    qs = qs.select_related("installation").order_by("-created_at", "-pk")
    # How Django's own values()/values_list() change what a queryset yields; kept by clones.
    qs._iterable_class = _RedactedEntries
    return qs


def delivery_log_get(*, user: object, pk: int | str) -> DeliveryLogEntry:
    """One entry `user` may see, with its bodies and URL redacted again; Http404 otherwise."""
    entry = get_object_or_404(
        DeliveryLogEntry.objects.for_user(user).select_related(
            "installation__spec_version__spec", "installation__organization", "organization"
        ),
        pk=pk,
    )
    return delivery_log_entry_redact(entry)


def _installation_secrets(installation: Installation | None) -> set[str]:
    """The current values of the installation's secret properties and tokens."""
    if installation is None:
        return set()
    values = {str(v) for v in (installation.secret_properties or {}).values() if v}
    tokens = installation.tokens or {}
    values |= {str(tokens[k]) for k in ("access_token", "refresh_token") if tokens.get(k)}
    return values


def delivery_log_entry_redact(entry: DeliveryLogEntry) -> DeliveryLogEntry:
    """`entry` with the installation's secrets replaced by ``[redacted]`` in every text field
    shown to people (in memory only; the row is not saved)."""
    return _entry_redact(entry, _installation_secrets(entry.installation))


def _entry_redact(entry: DeliveryLogEntry, secrets: set[str]) -> DeliveryLogEntry:
    if secrets:
        for field in ("url", "error", "request_body", "response_body"):
            setattr(entry, field, redact(getattr(entry, field) or "", secrets))
    return entry


def delivery_log_prune(*, older_than_days: int | None = None) -> int:
    """Delete entries older than `older_than_days` (default: the DELIVERY_LOG_RETENTION_DAYS
    setting). Returns how many were deleted. Newer entries are never touched."""
    days = settings.DELIVERY_LOG_RETENTION_DAYS if older_than_days is None else older_than_days
    if days < 0:
        raise ValueError("older_than_days must be 0 or more")
    cutoff = timezone.now() - dt.timedelta(days=days)
    deleted = 0
    while True:
        batch = list(
            DeliveryLogEntry.objects.filter(created_at__lt=cutoff).values_list("pk", flat=True)[
                :PRUNE_BATCH_SIZE
            ]
        )
        if not batch:
            return deleted
        count, _ = DeliveryLogEntry.objects.filter(pk__in=batch).delete()
        deleted += count
