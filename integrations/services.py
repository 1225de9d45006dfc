"""Writes for integrations: the spec catalog (built-in sync, custom upload, review),
installations, OAuth connect, user mapping and the delivery log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from integrations.engine.errors import SpecError
from integrations.engine.spec import Spec, load_spec
from integrations.models import IntegrationSpec, SpecVersion
from tenants.models import Account
from tenants.selectors import accounts_managed_by

BUILTIN_SPECS_DIR = Path(__file__).resolve().parent / "specs"


def builtin_specs_sync(*, directory: Path = BUILTIN_SPECS_DIR) -> list[SpecVersion]:
    """Load every `*.json` of the built-in specs folder into the catalog, approved.

    A changed file becomes a new version; installations stay on their version until an
    admin upgrades them. Raises SpecError (naming the file) if a built-in spec is invalid.
    """
    created: list[SpecVersion] = []
    for path in sorted(directory.glob("*.json")):
        try:
            spec = load_spec(path)
        except SpecError as exc:
            raise SpecError(
                [type(p)(f"{path.name}:{p.pointer}", p.message) for p in exc.problems]
            ) from exc
        version = _spec_version_store(spec=spec, account=None, uploaded_by=None, approved=True)
        if version is not None:
            created.append(version)
    return created


@transaction.atomic
def _spec_version_store(
    *, spec: Spec, account: Account | None, uploaded_by: Any, approved: bool
) -> SpecVersion | None:
    document = spec.raw
    entry, _ = IntegrationSpec.objects.select_for_update().get_or_create(
        account=account,
        spec_id=spec.id,
        defaults={"name": spec.name, "spec_class": spec.spec_class, "logo": spec.logo or ""},
    )
    digest = SpecVersion.digest(document)
    latest = entry.versions.order_by("-number").first()
    if latest is not None and latest.sha256 == digest:
        return None
    entry.name, entry.spec_class, entry.logo = spec.name, spec.spec_class, spec.logo or ""
    entry.full_clean()
    entry.save()
    version = SpecVersion(
        spec=entry,
        number=(latest.number + 1) if latest else 1,
        document=document,
        sha256=digest,
        status=SpecVersion.Status.APPROVED if approved else SpecVersion.Status.SUBMITTED,
        uploaded_by=uploaded_by,
        reviewed_at=timezone.now() if approved else None,
    )
    version.full_clean()
    version.save()
    return version


def spec_upload(*, user: Any, account: Account, source: str | bytes | dict) -> SpecVersion:
    """Validate and store a reseller's custom spec; it waits for staff approval.

    Raises SpecError listing every problem (with JSON pointers); nothing is stored then.
    Raises PermissionDenied unless `user` is a reseller admin of `account`.
    """
    if not accounts_managed_by(user=user).filter(pk=account.pk).exists():
        raise PermissionDenied("Only a reseller admin of this account can upload specs.")
    # Text is always parsed as JSON (bytes), never taken for a path on our disk.
    spec = load_spec(source.encode() if isinstance(source, str) else source)
    version = _spec_version_store(spec=spec, account=account, uploaded_by=user, approved=False)
    if version is None:
        raise SpecError("This exact document was already uploaded.")
    return version


def spec_version_review(
    *, reviewer: Any, version: SpecVersion, approve: bool, note: str = ""
) -> SpecVersion:
    """Approve or reject a submitted version (platform staff only)."""
    if not getattr(reviewer, "is_staff", False):
        raise PermissionDenied("Only platform staff review specs.")
    version.status = SpecVersion.Status.APPROVED if approve else SpecVersion.Status.REJECTED
    version.reviewed_by = reviewer
    version.reviewed_at = timezone.now()
    version.review_note = note
    version.save(update_fields=["status", "reviewed_by", "reviewed_at", "review_note"])
    return version


def spec_document_text(version: SpecVersion) -> str:
    return json.dumps(version.document, indent=2, sort_keys=False)
