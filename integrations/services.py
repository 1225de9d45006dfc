"""Writes for integrations: the spec catalog (built-in sync, custom upload, review),
installations (enable, edit, upgrade, disable), OAuth connect and the connection test.

Errors: `django.core.exceptions.ValidationError` for bad input (property values by property
name), `PermissionDenied` for a user who may not do it, `SpecError` for a spec or configuration
mistake, `IntegrationError` when the third party fails (its message is safe to show), and
`OAuthStateError` for a callback whose `state` cannot be trusted.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import secrets
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from integrations.connections import (
    installation_connection,
    installation_spec,
    oauth_redirect_uri,
)
from integrations.engine.client import CallResult, SpecClient, request_summary
from integrations.engine.errors import IntegrationError, Problem, SpecError
from integrations.engine.spec import PropertyDef, Spec, load_spec
from integrations.models import Installation, IntegrationSpec, Notice, OAuthState, SpecVersion
from tenants.models import Account, Membership, Organization
from tenants.phones import phone_to_e164
from tenants.selectors import accounts_managed_by

logger = logging.getLogger(__name__)

BUILTIN_SPECS_DIR = Path(__file__).resolve().parent / "specs"


def builtin_specs_sync(*, directory: Path = BUILTIN_SPECS_DIR) -> list[SpecVersion]:
    """Load every `*.json` of the built-in specs folder into the catalog, approved.

    A changed file becomes a new version; installations stay on their version until an
    admin upgrades them. Every valid file is stored even when another one is invalid; then
    SpecError lists the problems of the invalid files (each pointer prefixed by the file name).
    """
    created: list[SpecVersion] = []
    problems: list[Problem] = []
    for path in sorted(directory.glob("*.json")):
        try:
            spec = load_spec(path)
        except SpecError as exc:
            problems.extend(Problem(f"{path.name}:{p.pointer}", p.message) for p in exc.problems)
            continue
        version = _spec_version_store(spec=spec, account=None, uploaded_by=None, approved=True)
        if version is not None:
            created.append(version)
    if problems:
        raise SpecError(problems)
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
    if approved or latest is None:
        # The catalog shows what staff approved: a submitted version doesn't rename it.
        _spec_entry_describe(entry=entry, document=document)
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


def _spec_entry_describe(*, entry: IntegrationSpec, document: dict[str, Any]) -> None:
    entry.name = str(document.get("name") or entry.spec_id)
    entry.spec_class = str(document.get("class") or entry.spec_class)
    entry.logo = str(document.get("logo") or "")
    entry.full_clean()
    entry.save()


def spec_upload(*, user: Any, account: Account, source: str | bytes | dict) -> SpecVersion:
    """Validate and store a reseller's custom spec; it waits for staff approval.

    Raises SpecError listing every problem (with JSON pointers); nothing is stored then.
    Raises PermissionDenied unless `user` is a reseller admin of `account`.
    """
    if not accounts_managed_by(user=user).filter(pk=account.pk).exists():
        raise PermissionDenied("Only a reseller admin of this account can upload specs.")
    # Text is always parsed as JSON (bytes), never taken for a path on our disk.
    spec = load_spec(source.encode() if isinstance(source, str) else source)
    _spec_id_check(spec=spec, account=account)
    version = _spec_version_store(spec=spec, account=account, uploaded_by=user, approved=False)
    if version is None:
        raise SpecError("This exact document was already uploaded.")
    return version


def _spec_id_check(*, spec: Spec, account: Account) -> None:
    """Refuse an `id` that another spec the account's organizations can see already uses.

    Webhooks are routed by `/services/<id>/a<account>`: a custom spec reusing a built-in's id
    would take over the built-in's route once approved. The account's own spec of that id is
    fine — the upload is its new version.
    """
    # What the account's organizations see: the built-ins and the account's own specs.
    visible = IntegrationSpec.objects.filter(Q(account__isnull=True) | Q(account=account))
    clash = visible.filter(spec_id=spec.id).exclude(account=account).first()
    if clash is not None:
        raise SpecError(
            Problem(
                "/id",
                f"“{spec.id}” is already the id of the built-in integration “{clash.name}”; "
                "give your spec another id (for example with your company's name in it)",
            )
        )


def spec_version_review(
    *, reviewer: Any, version: SpecVersion, approve: bool, note: str = ""
) -> SpecVersion:
    """Approve or reject a submitted version (platform staff only).

    Raises:
        PermissionDenied: the reviewer is not staff.
        ValidationError: approving an account's spec whose id a built-in spec uses (one
            uploaded before built-in ids were reserved): it would take over the built-in's
            webhook route.
    """
    if not getattr(reviewer, "is_staff", False):
        raise PermissionDenied("Only platform staff review specs.")
    spec = version.spec
    if (
        approve
        and spec.account_id is not None
        and IntegrationSpec.objects.filter(account__isnull=True, spec_id=spec.spec_id).exists()
    ):
        raise ValidationError(
            f"“{spec.spec_id}” is the id of a built-in integration: this spec cannot be "
            "approved. Reject it and ask the reseller to upload it again under another id."
        )
    version.status = SpecVersion.Status.APPROVED if approve else SpecVersion.Status.REJECTED
    version.reviewed_by = reviewer
    version.reviewed_at = timezone.now()
    version.review_note = note
    version.save(update_fields=["status", "reviewed_by", "reviewed_at", "review_note"])
    if approve:
        _spec_entry_describe(entry=version.spec, document=version.document)
    return version


def spec_document_text(version: SpecVersion) -> str:
    return json.dumps(version.document, indent=2, sort_keys=False)


# =============================================================================================
# Installations
# =============================================================================================

# How long an OAuth `state` may wait for its callback.
OAUTH_STATE_LIFETIME = dt.timedelta(minutes=10)
# Methods the connection test may run: harmless reads only.
CONNECTION_TEST_METHODS = ("Users", "FindContact", "GetUserInfo")
# Methods that tell who the credentials belong to, in order of preference (after `Users`).
USER_INFO_METHODS = ("GetUserInfo", "Me", "CurrentUser")
# Methods that revoke the connection at the provider (RFC 7009 style), tried on disconnect.
REVOKE_METHODS = ("Logout", "Unauthorize", "RevokeToken", "Disconnect")


class OAuthStateError(Exception):
    """An OAuth callback whose `state` is unknown, expired, already used or another user's.

    `message` says what happened and what to do, and is safe to show.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def property_is_secret(prop: PropertyDef) -> bool:
    """Secret properties are stored encrypted and never rendered back (as in the form)."""
    return prop.secret or prop.type == "secret"


def _property_value_clean(prop: PropertyDef, value: Any) -> Any:
    """`value` converted to the property's type. Raises ValueError with a message for people."""
    if prop.type == "boolean":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off", ""):
            return False
        raise ValueError("Enter true or false.")
    if prop.type == "number":
        if isinstance(value, bool):
            raise ValueError("Enter a number.")
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            number = value
        else:
            try:
                number = float(str(value).strip())
            except ValueError:
                raise ValueError("Enter a number.") from None
        if not math.isfinite(number):
            raise ValueError("Enter a number.")
        # Whole numbers are stored as int: a page size of 20 is sent as 20, never "20.0".
        return int(number) if number.is_integer() else number
    text = value if isinstance(value, str) else str(value)
    text = text.strip()
    if prop.type == "url":
        parsed = urllib.parse.urlsplit(text)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError("Enter a valid URL starting with https:// (or http://).")
        return text
    if prop.type == "choice" and prop.choices:
        allowed = {str(c) for c in prop.choices}
        if text not in allowed:
            raise ValueError(f"Select one of: {', '.join(sorted(allowed))}.")
    return text


def installation_properties_clean(
    *,
    spec: Spec,
    properties: dict[str, Any],
    secret_properties: dict[str, Any],
    stored_secrets: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Check and type the property values for `spec`: (plain values, secret values).

    A secret left blank keeps the stored one (`stored_secrets`); a value given under the wrong
    dict is moved where it belongs; a missing optional value takes the spec's default.

    Raises:
        ValidationError: by property name — unknown properties, missing required ones,
            values of the wrong type. Nothing is changed then.
    """
    errors: dict[str, list[str]] = {}
    given = {**(properties or {}), **(secret_properties or {})}
    known = {prop.name: prop for prop in spec.properties}
    for name in given:
        if name not in known:
            errors.setdefault(name, []).append(f"{spec.name} has no property “{name}”.")
    plain: dict[str, Any] = {}
    secret: dict[str, str] = {}
    stored = stored_secrets or {}
    for prop in spec.properties:
        value = given.get(prop.name)
        blank = value is None or (isinstance(value, str) and not value.strip())
        if property_is_secret(prop):
            if blank:
                if prop.name in stored and stored[prop.name] not in (None, ""):
                    secret[prop.name] = str(stored[prop.name])
                elif prop.required:
                    errors.setdefault(prop.name, []).append("This secret is required.")
                continue
            secret[prop.name] = str(value).strip()
            continue
        if blank and prop.type != "boolean":
            if prop.default not in (None, ""):
                value = prop.default
            elif prop.required:
                errors.setdefault(prop.name, []).append("This field is required.")
                continue
            else:
                continue
        try:
            plain[prop.name] = _property_value_clean(prop, False if value is None else value)
        except ValueError as exc:
            errors.setdefault(prop.name, []).append(str(exc))
    if errors:
        raise ValidationError(errors)
    return plain, secret


def _organization_check(*, user: Any, organization: Organization) -> None:
    if not Organization.objects.for_user(user).filter(pk=organization.pk).exists():
        raise PermissionDenied("You cannot manage integrations of this organization.")


def _spec_version_check(*, spec_version: SpecVersion, organization: Organization) -> None:
    spec = spec_version.spec
    if spec.account_id is not None and spec.account_id != organization.account_id:
        raise PermissionDenied("This integration belongs to another account.")
    if spec_version.status != SpecVersion.Status.APPROVED:
        raise ValidationError(
            f"Version {spec_version.number} of {spec.name} is not approved: it cannot be enabled."
        )


def _is_oauth2(spec: Spec) -> bool:
    return spec.auth_type == "oauth2"


def _label_of_user(record: dict[str, Any]) -> str:
    name = str(record.get("user_name") or "").strip()
    email = str(record.get("user_email") or "").strip()
    if name and email:
        return f"{name} <{email}>"
    return name or email or str(record.get("user_id") or "")


def _user_pick(records: list[dict[str, Any]], admin_email: str) -> dict[str, Any] | None:
    """The record whose `user_email` is the admin's (case-insensitive), else the first."""
    wanted = admin_email.strip().lower()
    for record in records:
        if wanted and str(record.get("user_email") or "").strip().lower() == wanted:
            return record
    return records[0] if records else None


def _connected_as(client: SpecClient, *, admin_email: str = "") -> str:
    """Who the credentials act as: the `Users` record whose email is the admin's (else the
    first), or a user-info method's answer. Best effort: "" when it cannot be told."""
    try:
        if client.has_method("Users"):
            chosen = _user_pick(client.call("Users").records, admin_email)
            if chosen is not None:
                return _label_of_user(chosen)[:300]
        for name in USER_INFO_METHODS:
            if client.has_method(name):
                return _label_of_user(client.call(name).first())[:300]
    except (IntegrationError, SpecError) as exc:
        logger.info("could not tell who the connection acts as: %s", exc)
    return ""


def _verify_method(spec: Spec) -> str | None:
    """The harmless call that proves basic/bearer/token credentials work: `Users`, a
    user-info method, else `FindContact` with a number no contact has."""
    for name in ("Users", *USER_INFO_METHODS, "FindContact"):
        if spec.has_method(name):
            return name
    return None


# A fictional number (555-01xx is reserved for fiction): FindContact with it finds nobody, so
# its answer only tells whether the credentials were accepted.
VERIFY_PHONE = "+12025550199"
# Shown (as the installation's status detail) when nothing could check the credentials.
CREDENTIALS_NOT_VERIFIED = (
    "Credentials not verified: this integration has no read method to test with. "
    "Check them by watching the delivery log when it is first used."
)


def _credential_names(spec: Spec) -> list[str]:
    """The properties the spec's authentication uses (e.g. "API Key"), in form order."""
    text = json.dumps(spec.authentication)
    names = [
        prop.name
        for prop in spec.properties
        if f"{spec.var_char}{prop.name}{spec.var_char}" in text
    ]
    return names or [prop.name for prop in spec.properties if property_is_secret(prop)]


def _credentials_hint(spec: Spec, message: str) -> str:
    """`message` with the engine's "reconnect the integration" turned into what a person can
    do for a spec without OAuth: there is no Connect button, the credentials are settings."""
    if _is_oauth2(spec) or "reconnect the integration" not in message:
        return message
    names = _credential_names(spec)
    what = " and ".join(f"“{name}”" for name in names) if names else "API key or password"
    hint = f"check the {what} in the integration's Settings (Edit) and save again"
    return message.replace("reconnect the integration", hint)


def _reworded(exc: IntegrationError, spec: Spec) -> IntegrationError:
    """`exc` with its message made actionable for `spec` (see `_credentials_hint`)."""
    message = _credentials_hint(spec, exc.message)
    if message == exc.message:
        return exc
    return IntegrationError(
        message,
        status=exc.status,
        method=exc.method,
        url=exc.url,
        permanent=exc.permanent,
        retry_after=exc.retry_after,
        auth_failed=exc.auth_failed,
        response_body=exc.response_body,
    )


def _verify_call(client: SpecClient, method: str) -> CallResult | None:
    """Run the verification `method`. FindContact is run with `VERIFY_PHONE`: finding nobody
    is success, and so is a 404 (how some CRMs say "no match"); 401/403 and every other
    failure raise. None when FindContact answered 404."""
    if method != "FindContact":
        return client.call(method)
    try:
        return client.call(method, {"phone": VERIFY_PHONE})
    except IntegrationError as exc:
        if exc.status == 404 and not exc.auth_failed:
            return None
        raise


def _run_install(installation: Installation, client: SpecClient) -> dict[str, Any]:
    """Run the spec's `Install` requests; their captures, JSON-safe."""
    if not client.spec.install:
        return {}
    result = client.install()
    return json.loads(json.dumps(result.values, default=str))


def _store_captured(installation: Installation, values: dict[str, Any]) -> None:
    if not values:
        return
    installation.captured = {**(installation.captured or {}), **values}
    installation.save(update_fields=["captured", "updated_at"])


def _verify_and_install(installation: Installation, *, admin_email: str, install: bool) -> None:
    """For specs that are not oauth2: run Install (when `install`) and a harmless test call.

    Raises IntegrationError / SpecError; the caller's transaction then stores nothing.
    """
    spec = installation_spec(installation)
    connection = installation_connection(installation)
    installed = False
    if install and spec.install:
        _store_captured(installation, _run_install(installation, connection.client))
        installed = True
        # A new client sees the captured values.
        connection = installation_connection(installation)
    method = _verify_method(spec)
    if spec.auth_type == "none":
        return
    if method is None and spec.auth_type != "token":
        # Nothing harmless to call: say so rather than pass silently.
        installation.connected_as = ""
        installation.status_detail = CREDENTIALS_NOT_VERIFIED
        installation.save(update_fields=["connected_as", "status_detail", "updated_at"])
        return
    try:
        if method is None:
            # No harmless read: obtaining a token proves the token-exchange credentials.
            connection.client.authenticator.current_tokens()  # type: ignore[attr-defined]
            result = None
        else:
            result = _verify_call(connection.client, method)
    except (IntegrationError, SpecError) as exc:
        if installed and spec.uninstall:
            # Undo what Install did at the provider before everything here is rolled back.
            try:
                connection.client.uninstall()
            except (IntegrationError, SpecError) as undo_error:
                logger.warning("Uninstall after a failed verification failed: %s", undo_error)
        if isinstance(exc, IntegrationError):
            raise _reworded(exc, spec) from exc
        raise
    if method == "Users" and result is not None:
        chosen = _user_pick(result.records, admin_email)
        installation.connected_as = _label_of_user(chosen)[:300] if chosen else ""
    elif method in USER_INFO_METHODS and result is not None:
        installation.connected_as = _label_of_user(result.first())[:300]
    else:
        # A token or a search that found nobody proves the credentials, not whose they are.
        installation.connected_as = ""
    if installation.status_detail == CREDENTIALS_NOT_VERIFIED:
        installation.status_detail = ""
    installation.save(update_fields=["connected_as", "status_detail", "updated_at"])


def _installation_options_clean(
    *, spec: Spec, create_contacts: bool | None, match_policy: str | None
) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if create_contacts is not None:
        options["create_contacts"] = bool(create_contacts) and spec.spec_class == "crm"
    if match_policy is not None:
        if match_policy not in Installation.MatchPolicy.values:
            raise ValidationError({"match_policy": f"Unknown match policy {match_policy!r}."})
        options["match_policy"] = match_policy
    return options


def installation_create(
    *,
    user: Any,
    organization: Organization,
    spec_version: SpecVersion,
    properties: dict[str, Any],
    secret_properties: dict[str, Any],
    label: str = "",
    create_contacts: bool = False,
    match_policy: str | None = None,
) -> Installation:
    """Enable `spec_version` for `organization`.

    Property values are checked against the spec (required, typed; secrets encrypted). For a
    spec that is not `oauth2`, its `Install` requests run now (their captures are stored on the
    installation) and basic/bearer/token credentials are verified by a harmless call (`Users`,
    a user-info method, or `FindContact` with a number that matches nobody; a spec with none
    of them is saved with `status_detail` saying its credentials were not verified); an
    `oauth2` installation starts *not connected* and runs `Install` after a successful OAuth
    connect, since it needs the tokens.

    All of it is one transaction: when Install or the verification fails, no installation is
    created (nor its tokens or delivery log rows).

    Raises:
        PermissionDenied: `user` may not see the organization, or the spec is another
            account's.
        ValidationError: the version is not approved, or property values are wrong (by name).
        IntegrationError: Install or the verification call failed (message safe to show).
        SpecError: the spec or its configuration is wrong.
    """
    _organization_check(user=user, organization=organization)
    _spec_version_check(spec_version=spec_version, organization=organization)
    spec = load_spec(spec_version.document)
    plain, secret = installation_properties_clean(
        spec=spec, properties=properties, secret_properties=secret_properties
    )
    options = _installation_options_clean(
        spec=spec, create_contacts=create_contacts, match_policy=match_policy
    )
    with transaction.atomic():
        installation = Installation(
            organization=organization,
            spec_version=spec_version,
            label=(label or "").strip(),
            properties=plain,
            secret_properties=secret or None,
            status=(
                Installation.Status.NOT_CONNECTED
                if _is_oauth2(spec)
                else Installation.Status.ACTIVE
            ),
            **options,
        )
        installation.full_clean()
        installation.save()
        if not _is_oauth2(spec):
            _verify_and_install(
                installation, admin_email=getattr(user, "email", "") or "", install=True
            )
    installation.refresh_from_db()
    return installation


def installation_update(
    *,
    installation: Installation,
    properties: dict[str, Any],
    secret_properties: dict[str, Any],
    label: str | None = None,
    create_contacts: bool | None = None,
    match_policy: str | None = None,
) -> Installation:
    """Change an installation's property values (a blank secret keeps the stored one) and
    options. basic/bearer/token credentials are verified again by a harmless call; token-type
    credentials that changed drop the stored tokens so new ones are obtained. On failure
    nothing is changed.

    Raises: ValidationError, IntegrationError, SpecError (as `installation_create`).
    """
    spec = installation_spec(installation)
    plain, secret = installation_properties_clean(
        spec=spec,
        properties=properties,
        secret_properties=secret_properties,
        stored_secrets=installation.secret_properties or {},
    )
    options = _installation_options_clean(
        spec=spec, create_contacts=create_contacts, match_policy=match_policy
    )
    changed = plain != (installation.properties or {}) or secret != (
        installation.secret_properties or {}
    )
    with transaction.atomic():
        locked = Installation.objects.select_for_update().get(pk=installation.pk)
        locked.properties = plain
        locked.secret_properties = secret or None
        if label is not None:
            locked.label = label.strip()
        for key, value in options.items():
            setattr(locked, key, value)
        if changed and spec.auth_type == "token":
            locked.tokens = None
        locked.full_clean()
        locked.save()
        if changed and not _is_oauth2(spec):
            _verify_and_install(locked, admin_email="", install=False)
            locked.refresh_from_db()
            if locked.status == Installation.Status.NEEDS_RECONNECT:
                installation_reactivate(installation=locked)
    installation.refresh_from_db()
    return installation


def installation_upgrade(
    *,
    installation: Installation,
    spec_version: SpecVersion,
    properties: dict[str, Any] | None = None,
    secret_properties: dict[str, Any] | None = None,
) -> Installation:
    """Move an installation to a newer approved version of its spec.

    Property values are re-validated against the new version: values of properties it no
    longer has are dropped; `properties`/`secret_properties` (from the upgrade form) fill in
    what it adds. Tokens and captured values are kept; basic/bearer/token credentials are
    verified again. On failure nothing changes.

    Raises: ValidationError (not newer, not approved, another spec, or property values),
    IntegrationError, SpecError.
    """
    current = installation.spec_version
    if spec_version.spec_id != current.spec_id:
        raise ValidationError("That version belongs to another integration.")
    if spec_version.status != SpecVersion.Status.APPROVED:
        raise ValidationError(f"Version {spec_version.number} is not approved.")
    if spec_version.number <= current.number:
        raise ValidationError(f"This installation already uses version {current.number}.")
    spec = load_spec(spec_version.document)
    names = {prop.name for prop in spec.properties}
    merged_plain = {k: v for k, v in (installation.properties or {}).items() if k in names} | dict(
        properties or {}
    )
    stored = {k: v for k, v in (installation.secret_properties or {}).items() if k in names}
    plain, secret = installation_properties_clean(
        spec=spec,
        properties=merged_plain,
        secret_properties=dict(secret_properties or {}),
        stored_secrets=stored,
    )
    with transaction.atomic():
        locked = Installation.objects.select_for_update().get(pk=installation.pk)
        locked.spec_version = spec_version
        locked.properties = plain
        locked.secret_properties = secret or None
        locked.full_clean()
        locked.save()
        if not _is_oauth2(spec):
            _verify_and_install(locked, admin_email="", install=False)
    installation.refresh_from_db()
    return installation


def installation_delete(*, installation: Installation, force: bool = False) -> None:
    """Disable an integration: run its `Uninstall` requests, revoke OAuth tokens where the
    spec can, and delete the installation (its mappings and delivery log go with it; SMS
    numbers bound to it become unbound).

    An `oauth2` installation that is not connected has nothing to uninstall at the provider.

    Raises:
        IntegrationError / SpecError: Uninstall failed and `force` is False; nothing is
            deleted then. With `force`, failures are logged and the installation deleted.
    """
    installation.refresh_from_db()
    spec = installation_spec(installation)
    connected = not _is_oauth2(spec) or bool((installation.tokens or {}).get("access_token"))
    if spec.uninstall and connected:
        try:
            installation_connection(installation).client.uninstall()
        except (IntegrationError, SpecError) as exc:
            if not force:
                raise
            logger.warning("Uninstall of installation %s failed (forced): %s", installation.pk, exc)
    if _is_oauth2(spec) and connected:
        _oauth_revoke(installation)
    installation.delete()


# =============================================================================================
# Needs reconnect
# =============================================================================================


def installation_needs_reconnect(*, installation: Installation, message: str) -> None:
    """Mark the installation *needs reconnect* (its credentials were refused even after a
    refresh), tell the organization's admins with a portal notice — once while unresolved — and
    by email when EMAIL_HOST is set (org admins and the reseller's admins)."""
    # Only the run that moves it out of "active" tells people (two workers failing together
    # give one notice).
    changed = Installation.objects.filter(
        pk=installation.pk, status=Installation.Status.ACTIVE
    ).update(status=Installation.Status.NEEDS_RECONNECT, status_detail=message[:2000])
    installation.status = Installation.Status.NEEDS_RECONNECT
    installation.status_detail = message
    if not changed:
        return
    action_url = reverse("integrations:installation_detail", args=[installation.pk])
    name = installation.label or installation.spec_version.spec.name
    spec = installation_spec(installation)
    if _is_oauth2(spec):
        headline, until = f"{name} needs to be reconnected", "Until an admin connects it again"
    else:  # no Connect button: the credentials are settings
        message = _credentials_hint(spec, message)
        headline = f"{name} stopped accepting its credentials"
        until = "Until an admin fixes them in the integration's Settings"
    text = (
        f"{headline}: {message} {until}, nothing is sent through it: calls and messages are "
        "not logged and messages are not sent. Calls that arrive meanwhile are logged once it "
        "works again; messages that failed must be sent again."
    )
    # An older notice of the same kind was about an earlier disconnection.
    Notice.objects.filter(
        installation=installation, resolved_at__isnull=True, action_url=action_url
    ).update(resolved_at=timezone.now())
    Notice.objects.create(
        organization_id=installation.organization_id,
        installation=installation,
        level=Notice.Level.ERROR,
        message=text,
        action_url=action_url,
    )
    if not getattr(settings, "EMAIL_HOST", ""):
        return
    organization = installation.organization
    emails = set(
        Membership.objects.filter(organization=organization, role=Membership.Role.ORG_ADMIN)
        .exclude(user__email="")
        .values_list("user__email", flat=True)
    ) | set(
        Membership.objects.filter(account_id=organization.account_id, role=Membership.Role.RESELLER)
        .exclude(user__email="")
        .values_list("user__email", flat=True)
    )
    if not emails:
        return
    try:
        send_mail(
            subject=f"[Patchbay] {headline} ({organization.name})",
            message=text + f"\n\n{settings.PUBLIC_BASE_URL}{action_url}",
            from_email=None,
            recipient_list=sorted(emails),
        )
    except Exception:  # an unreachable mail server must not hide the notice
        logger.exception("installation %s: reconnect email not sent", installation.pk)


def installation_reactivate(*, installation: Installation) -> None:
    """Back to *active* after it needed reconnecting (connected again, credentials fixed, a
    connection test passed): resolve its reconnect notices and log the calls that arrived
    meanwhile. Call it wherever an installation becomes active again."""
    from integrations.call_logging import call_activities_resume

    Installation.objects.filter(
        pk=installation.pk, status=Installation.Status.NEEDS_RECONNECT
    ).update(status=Installation.Status.ACTIVE, status_detail="", updated_at=timezone.now())
    installation.status = Installation.Status.ACTIVE
    installation.status_detail = ""
    Notice.objects.filter(
        installation=installation,
        resolved_at__isnull=True,
        action_url=reverse("integrations:installation_detail", args=[installation.pk]),
    ).update(resolved_at=timezone.now())
    call_activities_resume(installation=installation)


# =============================================================================================
# Connection test
# =============================================================================================


@dataclass
class ConnectionTest:
    """The outcome of a connection test, for the page and the API.

    `records` are the mapped records; `result` the JSON the method returns (a list for list
    methods); `requests` the requests that were (or would have been) sent, redacted;
    `attempts` the delivery log rows of this test (status, duration, error); `error` the
    actionable message when it failed.
    """

    ok: bool
    method_name: str
    records: list[dict[str, Any]] = field(default_factory=list)
    result: Any = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""
    phone: str | None = None
    phone_used: str | None = None

    @property
    def result_json(self) -> str:
        return json.dumps(self.result, indent=2, default=str, ensure_ascii=False)


def _scrub(value: Any, secrets_: set[str]) -> Any:
    """`value` (JSON) with every secret text replaced, as a last line of defence."""
    text = json.dumps(value, default=str)
    for secret in sorted(secrets_, key=len, reverse=True):
        if secret and len(secret) >= 3:
            text = text.replace(json.dumps(secret)[1:-1], "[redacted]")
    return json.loads(text)


def installation_test(
    *, installation: Installation, method_name: str = "Users", phone: str | None = None
) -> ConnectionTest:
    """Run a harmless method (`Users`, `FindContact` with `phone`, or `GetUserInfo`) and
    report the mapped result or the actionable error, with the requests sent (redacted).

    `phone` is normalized to E.164 with the organization's default region first. A failure to
    authenticate an oauth2 installation marks it *needs reconnect*; a success clears that.

    Raises:
        ValidationError: an unknown method for this test, a method the spec lacks, or a phone
            number that cannot be read (keyed "method_name" / "phone").
    """
    spec = installation_spec(installation)
    if method_name not in CONNECTION_TEST_METHODS:
        raise ValidationError({"method_name": f"{method_name} cannot be used to test."})
    if not spec.has_method(method_name):
        raise ValidationError({"method_name": f"{spec.name} has no {method_name} method."})
    params: dict[str, Any] = {}
    normalized = None
    if method_name == "FindContact":
        normalized = phone_to_e164(
            phone or "", region=installation.organization.default_region, field="phone"
        )
        params["phone"] = normalized
    connection = installation_connection(installation)
    client = connection.client
    secrets_ = spec.secret_values(
        {
            **(installation.properties or {}),
            **(installation.secret_properties or {}),
            **(installation.captured or {}),  # secret parameters an Install captured
        }
    ) | {str(v) for v in (installation.secret_properties or {}).values() if v}
    outcome = ConnectionTest(ok=False, method_name=method_name, phone=normalized)
    try:
        result: CallResult = client.call(method_name, params)
    except (IntegrationError, SpecError) as exc:
        outcome.error = _credentials_hint(spec, str(exc))
        try:
            outcome.requests = [request_summary(r) for r in client.dry_run(method_name, params)]
        except (IntegrationError, SpecError):
            outcome.requests = []
        if (
            isinstance(exc, IntegrationError)
            and exc.auth_failed
            and _is_oauth2(spec)
            and installation.status == Installation.Status.ACTIVE
        ):
            installation_needs_reconnect(installation=installation, message=str(exc))
    else:
        outcome.ok = True
        secrets_ |= spec.secret_values(result.values)  # secret parameters it captured
        outcome.records = result.records
        outcome.result = result.to_json()
        outcome.phone_used = result.phone_used
        outcome.requests = [request_summary(r) for r in result.requests]
        if installation.status == Installation.Status.NEEDS_RECONNECT:
            installation_reactivate(installation=installation)
    tokens = (
        Installation.objects.filter(pk=installation.pk).values_list("tokens", flat=True).first()
        or {}
    )
    secrets_ |= {str(tokens[k]) for k in ("access_token", "refresh_token") if tokens.get(k)}
    outcome.attempts = [
        {
            "method": entry.http_method,
            "url": entry.url,
            "status": entry.status_code,
            "duration_ms": entry.duration_ms,
            "attempt": entry.attempt,
            "error": _credentials_hint(spec, entry.error or ""),
        }
        for entry in connection.log.entries
    ]
    outcome.records = _scrub(outcome.records, secrets_)
    outcome.result = _scrub(outcome.result, secrets_)
    outcome.requests = _scrub(outcome.requests, secrets_)
    outcome.attempts = _scrub(outcome.attempts, secrets_)
    outcome.error = _scrub(outcome.error, secrets_)
    return outcome


# =============================================================================================
# OAuth connect
# =============================================================================================


def oauth_connect_start(*, installation: Installation, user: Any) -> str:
    """The provider's authorize URL to send `user` to, with a fresh `state` bound to this
    installation and this user (single use, valid for 10 minutes).

    Raises:
        PermissionDenied: `user` may not see the installation.
        SpecError: the spec does not use oauth2, or its authorize URL cannot be built from the
            property values (naming the missing value).
    """
    if not Installation.objects.for_user(user).filter(pk=installation.pk).exists():
        raise PermissionDenied("You cannot connect this installation.")
    spec = installation_spec(installation)
    if not _is_oauth2(spec):
        raise SpecError(Problem("/authentication/type", f"{spec.name} does not use OAuth 2.0"))
    redirect_uri = oauth_redirect_uri()
    state = secrets.token_urlsafe(32)
    url = installation_connection(installation).client.authorization_url(
        state=state, redirect_uri=redirect_uri
    )
    # Forget this installation's stale states; the new one is the only live one of this user.
    OAuthState.objects.filter(installation=installation, expires_at__lt=timezone.now()).delete()
    OAuthState.objects.create(
        state=state,
        installation=installation,
        user=user,
        redirect_uri=redirect_uri,
        expires_at=timezone.now() + OAUTH_STATE_LIFETIME,
    )
    return url


def oauth_state_consume(*, state: str, user: Any) -> OAuthState:
    """Mark the state used (committed at once, so a replay fails even if the exchange does)."""
    if not state:
        raise OAuthStateError(
            "The CRM sent no state with its answer, so it cannot be trusted. Click Connect again."
        )
    with transaction.atomic():
        found = (
            OAuthState.objects.select_for_update()
            .select_related("installation")
            .filter(state=state)
            .first()
        )
        if found is None:
            raise OAuthStateError(
                "This connection answer does not match any connection started here (unknown "
                "state). Open the integration and click Connect again."
            )
        if found.user_id != getattr(user, "pk", None):
            raise OAuthStateError(
                "This connection was started by another user. Open the integration and click "
                "Connect yourself."
            )
        if found.used_at is not None:
            raise OAuthStateError(
                "This connection answer was already used. Open the integration and click "
                "Connect again."
            )
        if found.expires_at <= timezone.now():
            raise OAuthStateError(
                "This connection attempt expired (it must be finished within "
                f"{int(OAUTH_STATE_LIFETIME.total_seconds() // 60)} minutes). Click Connect again."
            )
        if not Installation.objects.for_user(user).filter(pk=found.installation_id).exists():
            raise OAuthStateError("You can no longer manage this integration.")
        found.used_at = timezone.now()
        found.save(update_fields=["used_at"])
    return found


def oauth_state_installation(*, state: str, user: Any) -> Installation | None:
    """The installation a callback's `state` names, if `user` may see it (to send them back
    to its page after an error); None otherwise."""
    found = OAuthState.objects.filter(state=state or "", user_id=getattr(user, "pk", None)).first()
    if found is None:
        return None
    return Installation.objects.for_user(user).filter(pk=found.installation_id).first()


def _tokens_wipe(installation: Installation, *, status: str, detail: str) -> None:
    Installation.objects.filter(pk=installation.pk).update(
        tokens=None, status=status, status_detail=detail, updated_at=timezone.now()
    )
    installation.tokens = None
    installation.status = status
    installation.status_detail = detail


def oauth_connect_finish(*, state: str, code: str, user: Any) -> Installation:
    """Finish an OAuth connect from the provider's callback.

    Checks `state` (known, this user's, unused, not expired — it is used up either way),
    exchanges `code` for tokens (stored encrypted by the token store), runs the spec's
    `Install` requests (their captures are stored), tells who the connection acts as
    (`Users`: the record with the admin's email, else the first; or a user-info method) and
    marks the installation active.

    Raises:
        OAuthStateError: a forged, reused, expired or another user's state.
        IntegrationError: the code exchange or Install failed; the installation is left not
            connected, with the message in `status_detail`.
        SpecError: the spec or its configuration is wrong.
    """
    found = oauth_state_consume(state=state, user=user)
    installation = Installation.objects.select_related("spec_version__spec", "organization").get(
        pk=found.installation_id
    )
    if not code:
        raise OAuthStateError("The CRM sent no authorization code. Click Connect again.")
    client = installation_connection(installation).client
    try:
        client.exchange_code(code=code, redirect_uri=found.redirect_uri)
    except (IntegrationError, SpecError) as exc:
        _tokens_wipe(
            installation, status=Installation.Status.NOT_CONNECTED, detail=f"Connect failed: {exc}"
        )
        raise
    installation.refresh_from_db()
    try:
        captured = _run_install(installation, installation_connection(installation).client)
    except (IntegrationError, SpecError) as exc:
        message = f"Connected, but the integration's setup requests (Install) failed: {exc}"
        _tokens_wipe(installation, status=Installation.Status.NOT_CONNECTED, detail=message)
        if isinstance(exc, IntegrationError):
            raise IntegrationError(
                message, status=exc.status, method="Install", permanent=exc.permanent
            ) from exc
        raise
    _store_captured(installation, captured)
    installation.refresh_from_db()
    installation.connected_as = _connected_as(
        installation_connection(installation).client, admin_email=getattr(user, "email", "") or ""
    )
    installation.status = Installation.Status.ACTIVE
    installation.status_detail = ""
    installation.save(update_fields=["connected_as", "status", "status_detail", "updated_at"])
    installation_reactivate(installation=installation)
    return installation


def _oauth_revoke(installation: Installation) -> list[str]:
    """Best effort: run the spec's revoke method (Logout, …). Problems, for the admin."""
    spec = installation_spec(installation)
    problems = []
    for name in REVOKE_METHODS:
        if spec.has_method(name):
            try:
                installation_connection(installation).client.call(name)
            except (IntegrationError, SpecError) as exc:
                problems.append(f"{name} failed: {exc}")
            break
    return problems


def oauth_disconnect(*, installation: Installation) -> None:
    """Disconnect an oauth2 installation: run its `Uninstall` requests (they undo what
    connecting set up) and revoke the tokens where the spec can — both best effort —, then
    wipe the tokens and mark it *not connected*. Problems are kept in `status_detail`.

    Raises:
        SpecError: the spec does not use oauth2 (there is no connection to undo; its
            credentials are property values, changed in the integration's settings).
    """
    installation.refresh_from_db()
    spec = installation_spec(installation)
    if not _is_oauth2(spec):
        raise SpecError(
            Problem(
                "/authentication/type",
                f"{spec.name} does not use OAuth 2.0, so there is nothing to disconnect; "
                "change its credentials in the integration's settings or disable it",
            )
        )
    problems: list[str] = []
    if (installation.tokens or {}).get("access_token"):
        if spec.uninstall:
            try:
                installation_connection(installation).client.uninstall()
            except (IntegrationError, SpecError) as exc:
                problems.append(f"Uninstall failed: {exc}")
        problems.extend(_oauth_revoke(installation))
    installation.connected_as = ""
    installation.save(update_fields=["connected_as", "updated_at"])
    _tokens_wipe(
        installation,
        status=Installation.Status.NOT_CONNECTED,
        detail=("Disconnected, with problems: " + "; ".join(problems)) if problems else "",
    )
    OAuthState.objects.filter(installation=installation, used_at__isnull=True).delete()
