"""CRM users and the mapping of PBX users to them, for one CRM installation.

Services (writes) and selectors (reads) of the user-mapping page and API. Callers pass an
`Installation` they obtained through the tenant-scoped `integrations.selectors`, so nothing
here looks up tenant data by a bare id except the task entry point `crm_users_fetch`, which
receives the id of a `UserFetch` this module created.

How a fetch works: `crm_users_fetch_start` records a pending `UserFetch` and enqueues
`crm_users_fetch_task` once the transaction commits; the task calls `crm_users_fetch`, which
runs the spec's `Users` method, upserts `CrmUser` rows, flags the ones the CRM no longer
returns (`present=False`) and matches PBX users to CRM users by email, case-insensitively —
never touching a mapping an admin chose by hand (`UserMapping.manual`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone

from integrations.connections import installation_connection, installation_spec
from integrations.engine.errors import IntegrationError, SpecError
from integrations.models import CrmUser, Installation, IntegrationSpec, UserFetch, UserMapping
from tenants.models import PbxUser

# A pending or running fetch younger than this is reused instead of starting another one
# (a double click, two admins); an older one is presumed lost with its worker.
FETCH_REUSE_WINDOW = dt.timedelta(minutes=10)
# Mapping statuses, as shown on the page and in the API.
STATUS_AUTO = "auto"
STATUS_MANUAL = "manual"
STATUS_UNMATCHED = "unmatched"
STATUS_DISAPPEARED = "disappeared"
STATUS_LABELS = {
    STATUS_AUTO: "Auto-matched by email",
    STATUS_MANUAL: "Chosen by an admin",
    STATUS_UNMATCHED: "Unmatched",
    STATUS_DISAPPEARED: "CRM user disappeared",
}


# --- Fetching CRM users -----------------------------------------------------------------------


def _require_users_method(installation: Installation) -> None:
    """ValidationError unless the installation is a CRM whose spec has a `Users` method."""
    if installation.spec_version.spec.spec_class != IntegrationSpec.SpecClass.CRM:
        raise ValidationError("Users are mapped for CRM integrations only.")
    try:
        spec = installation_spec(installation)
    except SpecError as exc:
        raise ValidationError(f"This integration's spec no longer loads: {exc}") from exc
    if "Users" not in spec.methods:
        raise ValidationError(
            "This integration's spec has no Users method, so its users cannot be fetched."
        )


def crm_users_fetch_start(*, installation: Installation) -> UserFetch:
    """Start fetching the installation's CRM users in the background.

    Creates a pending `UserFetch` and enqueues `crm_users_fetch_task` after the transaction
    commits. A fetch already pending or running (started in the last few minutes) is returned
    instead of starting a second one. Raises ValidationError when the installation is not a
    CRM or its spec has no `Users` method.
    """
    _require_users_method(installation)
    with transaction.atomic():
        # Serializes concurrent starts for one installation.
        Installation.objects.select_for_update().filter(pk=installation.pk).exists()
        active = (
            UserFetch.objects.filter(
                installation=installation,
                state__in=[UserFetch.State.PENDING, UserFetch.State.RUNNING],
                created_at__gte=timezone.now() - FETCH_REUSE_WINDOW,
            )
            .order_by("-created_at", "-pk")
            .first()
        )
        if active is not None:
            return active
        fetch = UserFetch.objects.create(installation=installation)
        from integrations.tasks import crm_users_fetch_task

        transaction.on_commit(lambda: crm_users_fetch_task.delay(fetch.pk))
    fetch.refresh_from_db()
    return fetch


def _fetch_finish(fetch: UserFetch, *, state: str, error: str = "") -> None:
    fetch.state = state
    fetch.error = error
    fetch.finished_at = timezone.now()
    fetch.save(update_fields=["state", "error", "finished_at", "fetched"])


def crm_users_fetch(*, fetch_id: int) -> UserFetch:
    """Run a fetch (the work of `crm_users_fetch_task`).

    Calls the spec's `Users` method (the HTTP door already retries transient failures), then
    in one transaction upserts a `CrmUser` per record (`user_id`, `user_name`, `user_email`),
    flags CRM users no longer returned as `present=False` and re-runs the email auto-match.
    Progress is saved on the `UserFetch` as it goes. A third-party or spec failure ends the
    fetch as *failed* with a message a person can act on (nothing is changed then); it is not
    raised. A fetch that already finished is left as it is (a redelivered task).
    """
    fetch = UserFetch.objects.select_related(
        "installation__spec_version__spec", "installation__organization"
    ).get(pk=fetch_id)
    if fetch.state in (UserFetch.State.DONE, UserFetch.State.FAILED):
        return fetch
    installation = fetch.installation
    fetch.state = UserFetch.State.RUNNING
    fetch.fetched = 0
    fetch.save(update_fields=["state", "fetched"])

    connection = None
    try:
        _require_users_method(installation)
        connection = installation_connection(installation)
        result = connection.client.call("Users")
    except IntegrationError as exc:
        if connection is not None:
            connection.log.record_failure(exc.message)
        _fetch_finish(fetch, state=UserFetch.State.FAILED, error=exc.message)
        return fetch
    except (SpecError, ValidationError) as exc:
        message = "; ".join(getattr(exc, "messages", None) or [str(exc)])
        _fetch_finish(fetch, state=UserFetch.State.FAILED, error=message)
        return fetch

    records = [r for r in result.records if str(r.get("user_id") or "").strip()]
    fetch.fetched = len(records)
    fetch.save(update_fields=["fetched"])
    crm_users_store(installation=installation, records=records)
    _fetch_finish(fetch, state=UserFetch.State.DONE)
    return fetch


def _text(value: Any, limit: int) -> str:
    return ("" if value is None else str(value)).strip()[:limit]


@transaction.atomic
def crm_users_store(*, installation: Installation, records: list[dict[str, Any]]) -> None:
    """Upsert CRM users from mapped `Users` records, flag the missing ones, auto-match.

    A record needs `user_id`; `user_name` and `user_email` are optional. Users absent from
    `records` stay (mappings keep pointing at them) but are marked `present=False`.
    """
    Installation.objects.select_for_update().filter(pk=installation.pk).exists()
    now = timezone.now()
    existing = {c.external_id: c for c in CrmUser.objects.filter(installation=installation)}
    seen: set[str] = set()
    for record in records:
        external_id = _text(record.get("user_id"), 200)
        if not external_id or external_id in seen:
            continue
        seen.add(external_id)
        name = _text(record.get("user_name"), 300)
        email = _text(record.get("user_email"), 300)
        crm_user = existing.get(external_id)
        if crm_user is None:
            crm_user = CrmUser(
                installation=installation,
                external_id=external_id,
                name=name,
                email=email,
                present=True,
                fetched_at=now,
            )
            crm_user.full_clean(validate_constraints=False)
            crm_user.save()
        else:
            crm_user.name, crm_user.email = name, email
            crm_user.present, crm_user.fetched_at = True, now
            crm_user.save(update_fields=["name", "email", "present", "fetched_at"])
    CrmUser.objects.filter(installation=installation, present=True).exclude(
        external_id__in=seen
    ).update(present=False)
    user_mapping_auto_match(installation=installation)


def user_mapping_auto_match(*, installation: Installation) -> int:
    """Match every PBX user of the organization without a manual choice to the present CRM
    user with the same email (case-insensitive). An email shared by several CRM users is
    ambiguous and left unmatched. Returns how many PBX users are auto-matched."""
    by_email: dict[str, list[CrmUser]] = {}
    for crm_user in CrmUser.objects.filter(installation=installation, present=True):
        if crm_user.email:
            by_email.setdefault(crm_user.email.casefold(), []).append(crm_user)
    mappings = {m.pbx_user_id: m for m in UserMapping.objects.filter(installation=installation)}
    matched = 0
    for pbx_user in PbxUser.objects.filter(organization_id=installation.organization_id):
        mapping = mappings.get(pbx_user.pk)
        if mapping is not None and mapping.manual:
            continue
        candidates = by_email.get(pbx_user.email.casefold(), []) if pbx_user.email else []
        crm_user = candidates[0] if len(candidates) == 1 else None
        if crm_user is None:
            if mapping is not None:
                mapping.delete()
            continue
        matched += 1
        if mapping is None:
            UserMapping.objects.create(
                installation=installation, pbx_user=pbx_user, crm_user=crm_user, manual=False
            )
        elif mapping.crm_user_id != crm_user.pk:
            mapping.crm_user = crm_user
            mapping.save(update_fields=["crm_user", "updated_at"])
    return matched


# --- Manual mapping ---------------------------------------------------------------------------


def _require_same_organization(installation: Installation, pbx_user: PbxUser) -> None:
    if pbx_user.organization_id != installation.organization_id:
        raise ValidationError(
            {"pbx_user": "The PBX user belongs to another organization than the integration."}
        )


@transaction.atomic
def user_mapping_set(
    *, installation: Installation, pbx_user: PbxUser, crm_user: CrmUser | None
) -> UserMapping:
    """Map `pbx_user` to `crm_user` by hand (None: deliberately unmatched).

    The choice is `manual`: re-fetching never changes it. Raises ValidationError when the
    PBX user is of another organization or the CRM user of another installation.
    """
    _require_same_organization(installation, pbx_user)
    if crm_user is not None and crm_user.installation_id != installation.pk:
        raise ValidationError({"crm_user": "This CRM user belongs to another integration."})
    Installation.objects.select_for_update().filter(pk=installation.pk).exists()
    mapping, _ = UserMapping.objects.update_or_create(
        installation=installation,
        pbx_user=pbx_user,
        defaults={"crm_user": crm_user, "manual": True},
    )
    return mapping


@transaction.atomic
def user_mapping_reset(*, installation: Installation, pbx_user: PbxUser) -> UserMapping | None:
    """Forget the manual choice for `pbx_user`: it is matched by email again (now, and on
    every fetch). Returns the automatic mapping, or None when nothing matches."""
    _require_same_organization(installation, pbx_user)
    Installation.objects.select_for_update().filter(pk=installation.pk).exists()
    UserMapping.objects.filter(installation=installation, pbx_user=pbx_user).delete()
    user_mapping_auto_match(installation=installation)
    return UserMapping.objects.filter(installation=installation, pbx_user=pbx_user).first()


# --- Reads ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserMappingRow:
    """One PBX user of the organization and what it is mapped to for one installation."""

    pbx_user: PbxUser
    crm_user: CrmUser | None
    manual: bool
    status: str

    @property
    def matched(self) -> bool:
        """Mapped to a CRM user the CRM still returns."""
        return self.status in (STATUS_AUTO, STATUS_MANUAL)

    @property
    def stale(self) -> bool:
        """Mapped to a CRM user the last fetch no longer returned."""
        return self.status == STATUS_DISAPPEARED

    @property
    def status_label(self) -> str:
        return STATUS_LABELS[self.status]


def _row_status(mapping: UserMapping | None) -> str:
    if mapping is None or mapping.crm_user is None:
        return STATUS_UNMATCHED
    if not mapping.crm_user.present:
        return STATUS_DISAPPEARED
    return STATUS_MANUAL if mapping.manual else STATUS_AUTO


def user_mapping_rows(*, installation: Installation) -> list[UserMappingRow]:
    """Every PBX user of the installation's organization, by extension, with its mapping and
    status: auto-matched, manual, unmatched, or mapped to a CRM user that disappeared."""
    mappings = {
        m.pbx_user_id: m
        for m in UserMapping.objects.filter(installation=installation).select_related("crm_user")
    }
    rows = []
    for pbx_user in PbxUser.objects.filter(organization_id=installation.organization_id).order_by(
        "extension", "pk"
    ):
        mapping = mappings.get(pbx_user.pk)
        rows.append(
            UserMappingRow(
                pbx_user=pbx_user,
                crm_user=mapping.crm_user if mapping else None,
                manual=bool(mapping and mapping.manual),
                status=_row_status(mapping),
            )
        )
    return rows


def user_mapping_row(*, installation: Installation, pbx_user: PbxUser) -> UserMappingRow:
    _require_same_organization(installation, pbx_user)
    mapping = (
        UserMapping.objects.filter(installation=installation, pbx_user=pbx_user)
        .select_related("crm_user")
        .first()
    )
    return UserMappingRow(
        pbx_user=pbx_user,
        crm_user=mapping.crm_user if mapping else None,
        manual=bool(mapping and mapping.manual),
        status=_row_status(mapping),
    )


def user_mapping_for(*, installation: Installation, pbx_user: PbxUser) -> dict[str, str]:
    """The CRM user values for logging a call of `pbx_user` (DESIGN 4.2 "Users"):
    `user_id`, `user_name`, `user_email` — empty values left out, and {} when the PBX user is
    unmatched or its CRM user disappeared (its id would be refused by the CRM)."""
    mapping = (
        UserMapping.objects.filter(
            installation=installation, pbx_user=pbx_user, crm_user__present=True
        )
        .select_related("crm_user")
        .first()
    )
    if mapping is None or mapping.crm_user is None:
        return {}
    crm_user = mapping.crm_user
    values = {
        "user_id": crm_user.external_id,
        "user_name": crm_user.name,
        "user_email": crm_user.email,
    }
    return {key: value for key, value in values.items() if value}


def crm_user_list(*, installation: Installation, include_absent: bool = True) -> QuerySet[CrmUser]:
    """The installation's CRM users, present ones first, by name."""
    qs = CrmUser.objects.filter(installation=installation)
    if not include_absent:
        qs = qs.filter(present=True)
    return qs.order_by("-present", "name", "email", "pk")


def crm_user_get(*, installation: Installation, pk: int | str) -> CrmUser:
    """A CRM user of this installation; Http404 otherwise."""
    return get_object_or_404(CrmUser.objects.filter(installation=installation), pk=pk)


def crm_users_fetch_get(*, installation: Installation, pk: int | str) -> UserFetch:
    """A fetch of this installation; Http404 otherwise."""
    return get_object_or_404(UserFetch.objects.filter(installation=installation), pk=pk)


def crm_users_fetch_latest(*, installation: Installation) -> UserFetch | None:
    return (
        UserFetch.objects.filter(installation=installation).order_by("-created_at", "-pk").first()
    )


def crm_users_fetch_is_active(fetch: UserFetch | None) -> bool:
    return fetch is not None and fetch.state in (UserFetch.State.PENDING, UserFetch.State.RUNNING)
