"""Writes of tenant data. Keyword-only arguments; `full_clean()` before every save; callers
(views, serializers, forms, commands) pass objects they obtained through `tenants.selectors`."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, models, transaction
from django.utils.text import slugify

from tenants.models import Account, Membership, Organization, PbxUser, SmsNumber
from tenants.selectors import accounts_managed_by


def _save_unique(instance: models.Model, *, field: str, constraint: str, message: str) -> None:
    """Save `instance`, turning a lost race on unique constraint `constraint` into a
    ValidationError naming `field`. `full_clean()` reports the ordinary duplicate; this
    covers a concurrent writer that inserted the same value in between. Other integrity
    errors propagate."""
    try:
        with transaction.atomic():
            instance.save()
    except IntegrityError as exc:
        text = str(exc)
        # PostgreSQL names the constraint; SQLite lists the columns ("... .extension").
        if constraint in text or f".{field}" in text:
            raise ValidationError({field: message}) from exc
        raise


def _unique_slug(*, account: Account, name: str, exclude_pk: int | None = None) -> str:
    base = slugify(name)[:70] or "org"
    slug, n = base, 2
    qs = Organization.objects.filter(account=account)
    if exclude_pk:
        qs = qs.exclude(pk=exclude_pk)
    while qs.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


def organization_create(
    *,
    user: object,
    account: Account,
    name: str,
    pbx_domain: str = "",
    default_region: str = "US",
    slug: str = "",
) -> Organization:
    """Create an organization under `account`. Only its reseller admins may."""
    if not accounts_managed_by(user=user).filter(pk=account.pk).exists():
        raise PermissionDenied("Only a reseller admin of this account can create organizations.")
    org = Organization(
        account=account,
        name=name.strip(),
        slug=slug or _unique_slug(account=account, name=name),
        pbx_domain=pbx_domain.strip(),
        default_region=(default_region or "US").upper(),
    )
    org.full_clean()
    _save_unique(
        org,
        field="slug",
        constraint="organization_slug_per_account",
        message=f"'{org.slug}' is already used in this account.",
    )
    return org


def organization_update(*, organization: Organization, **fields: Any) -> Organization:
    allowed = {"name", "pbx_domain", "default_region", "slug"}
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"cannot update {sorted(unknown)}")
    for name, value in fields.items():
        setattr(organization, name, value.strip() if isinstance(value, str) else value)
    organization.full_clean()
    _save_unique(
        organization,
        field="slug",
        constraint="organization_slug_per_account",
        message=f"'{organization.slug}' is already used in this account.",
    )
    return organization


def organization_delete(*, user: object, organization: Organization) -> None:
    """Delete `organization` with everything of it. Only its reseller admins may.

    Its integrations are uninstalled first, one by one, as if each were deleted on its own:
    the spec's `Uninstall` requests run (Zoho PhoneBridge unintegrates), OAuth tokens are
    revoked where the spec can, and the stored tokens go with the installation. A provider
    that fails to answer does not block the deletion (the failure is logged).
    """
    if not accounts_managed_by(user=user).filter(pk=organization.account_id).exists():
        raise PermissionDenied("Only a reseller admin can delete an organization.")
    # Imported here: integrations.services imports tenants.
    from integrations.services import installation_delete

    for installation in organization.installations.order_by("pk"):
        installation_delete(installation=installation, force=True)
    organization.delete()


def organization_rotate_webhook_secret(*, organization: Organization) -> str:
    from tenants.models import _new_webhook_secret

    organization.webhook_secret = _new_webhook_secret()
    organization.save(update_fields=["webhook_secret", "updated_at"])
    return organization.webhook_secret


def pbx_user_create(
    *, organization: Organization, extension: str, name: str, email: str = "", mobile: str = ""
) -> PbxUser:
    pbx_user = PbxUser(
        organization=organization,
        extension=str(extension).strip(),
        name=name.strip(),
        email=email.strip(),
        mobile=mobile.strip(),
    )
    pbx_user.full_clean()
    _save_unique(
        pbx_user,
        field="extension",
        constraint="pbx_user_extension_per_org",
        message=f"Extension {pbx_user.extension} is already used in this organization.",
    )
    return pbx_user


def pbx_user_update(*, pbx_user: PbxUser, **fields: Any) -> PbxUser:
    allowed = {"extension", "name", "email", "mobile"}
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"cannot update {sorted(unknown)}")
    for name, value in fields.items():
        setattr(pbx_user, name, str(value).strip() if value is not None else "")
    pbx_user.full_clean()
    _save_unique(
        pbx_user,
        field="extension",
        constraint="pbx_user_extension_per_org",
        message=f"Extension {pbx_user.extension} is already used in this organization.",
    )
    return pbx_user


def pbx_user_delete(*, pbx_user: PbxUser) -> None:
    pbx_user.delete()


@dataclass
class CsvRowError:
    line: int
    errors: dict[str, list[str]]

    def __str__(self) -> str:
        text = "; ".join(f"{k}: {' '.join(v)}" for k, v in self.errors.items())
        return f"line {self.line}: {text}"


@dataclass
class CsvImportResult:
    """Outcome of a CSV import. Rows are imported only when `imported` is True."""

    valid_rows: list[dict[str, str]] = field(default_factory=list)
    errors: list[CsvRowError] = field(default_factory=list)
    imported: bool = False
    created: int = 0
    updated: int = 0


CSV_COLUMNS = ("extension", "name", "email", "mobile")


def pbx_users_import_csv(
    *, organization: Organization, text: str, import_valid_rows: bool = False
) -> CsvImportResult:
    """Import PBX users from CSV (header: extension,name,email,mobile).

    Policy: when every row is valid the file is imported at once. When some rows are bad,
    nothing is imported and every bad row is reported with its line number; the caller may
    then confirm with `import_valid_rows=True` to import the valid rows only. An existing
    extension is updated, not duplicated. Everything happens in one transaction.
    """
    result = CsvImportResult()
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in ("extension", "name") if c not in header]
    if missing:
        result.errors.append(
            CsvRowError(
                1,
                {
                    "header": [
                        f"missing column(s) {', '.join(missing)}; expected {','.join(CSV_COLUMNS)}"
                    ]
                },
            )
        )
        return result
    seen: dict[str, int] = {}
    for line, raw in enumerate(reader, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items() if k}
        row = {k: row.get(k, "") for k in CSV_COLUMNS}
        candidate = PbxUser(organization=organization, **row)
        try:
            candidate.full_clean(validate_unique=False, validate_constraints=False)
        except ValidationError as exc:
            result.errors.append(CsvRowError(line, exc.message_dict))
            continue
        if candidate.extension in seen:
            result.errors.append(
                CsvRowError(
                    line,
                    {
                        "extension": [
                            f"extension {candidate.extension} already appears on line "
                            f"{seen[candidate.extension]}"
                        ]
                    },
                )
            )
            continue
        seen[candidate.extension] = line
        row["mobile"] = candidate.mobile
        row["extension"] = candidate.extension
        result.valid_rows.append(row)
    if result.errors and not import_valid_rows:
        return result
    with transaction.atomic():
        for row in result.valid_rows:
            existing = PbxUser.objects.filter(
                organization=organization, extension=row["extension"]
            ).first()
            if existing:
                pbx_user_update(
                    pbx_user=existing, name=row["name"], email=row["email"], mobile=row["mobile"]
                )
                result.updated += 1
            else:
                pbx_user_create(organization=organization, **row)
                result.created += 1
    result.imported = True
    return result


def sms_number_create(
    *, organization: Organization, number: str, label: str = "", users: list[PbxUser] | None = None
) -> SmsNumber:
    sms_number = SmsNumber(
        account_id=organization.account_id, organization=organization, number=number, label=label
    )
    sms_number.full_clean()
    with transaction.atomic():
        _save_unique(
            sms_number,
            field="number",
            constraint="sms_number_per_account",
            message=f"{sms_number.number} is already used in this account.",
        )
        if users:
            sms_number_assign(sms_number=sms_number, users=users)
    return sms_number


def sms_number_update(
    *, sms_number: SmsNumber, number: str | None = None, label: str | None = None
) -> SmsNumber:
    if number is not None:
        sms_number.number = number
    if label is not None:
        sms_number.label = label
    sms_number.full_clean()
    _save_unique(
        sms_number,
        field="number",
        constraint="sms_number_per_account",
        message=f"{sms_number.number} is already used in this account.",
    )
    return sms_number


def sms_number_assign(*, sms_number: SmsNumber, users: list[PbxUser]) -> SmsNumber:
    """Assign `sms_number` to exactly `users`, who must belong to its organization."""
    foreign = [u for u in users if u.organization_id != sms_number.organization_id]
    if foreign:
        raise ValidationError({"users": "Every user must belong to the number's organization."})
    sms_number.users.set(users)
    return sms_number


def sms_number_delete(*, sms_number: SmsNumber) -> None:
    sms_number.delete()


def membership_create(
    *, user: object, role: str, account: Account, organization: Organization | None = None
) -> Membership:
    membership = Membership(user=user, role=role, account=account, organization=organization)
    membership.full_clean()
    membership.save()
    return membership


def portal_user_create(*, username: str, password: str, email: str = "") -> Any:
    user_model = get_user_model()
    return user_model.objects.create_user(username=username, password=password, email=email)


def reseller_create(
    *, account_name: str, username: str, password: str, email: str = "", account_slug: str = ""
) -> Membership:
    """Create a reseller account (or take the existing one with `account_slug`) and a portal
    login that is its reseller admin. The password must pass the password validators.

    Raises:
        ValidationError: naming the field (username taken, weak password, bad slug).
    """
    user_model = get_user_model()
    username = username.strip()
    if not username:
        raise ValidationError({"username": "Enter a username."})
    if user_model.objects.filter(username=username).exists():
        raise ValidationError(
            {"username": f"'{username}' is already a portal login; choose another username."}
        )
    candidate = user_model(username=username, email=email.strip())
    try:
        validate_password(password, user=candidate)
    except ValidationError as exc:
        raise ValidationError({"password": exc.messages}) from exc
    slug = (account_slug or slugify(account_name))[:80]
    with transaction.atomic():
        account = Account.objects.filter(slug=slug).first()
        if account is None:
            account = Account(name=account_name.strip(), slug=slug)
            account.full_clean()
            account.save()
        user = portal_user_create(username=username, password=password, email=email.strip())
        return membership_create(user=user, role=Membership.Role.RESELLER, account=account)
