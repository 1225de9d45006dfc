"""The tenancy model: resellers (Account), their customers (Organization), the customers'
PBX users and SMS numbers, and who may manage what (Membership).

Tenant scoping lives here, in one place: every queryset has `for_user(user)`, and views,
serializers and forms only ever start from it (through `tenants.selectors`).
"""

from __future__ import annotations

import re
import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from portal.encryption import EncryptedTextField
from tenants.phones import phone_to_e164, region_is_valid

# A host name: dot-separated labels of letters, digits and inner hyphens.
_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)


def normalize_pbx_domain(value: str) -> str:
    """A PBX domain as stored: trimmed, lower case, without a trailing dot."""
    return (value or "").strip().lower().rstrip(".")


def validate_pbx_domain(value: str) -> None:
    """Refuse anything but a bare host name (no scheme, path, port or spaces). Blank is fine.

    The one check of the field, shared by the web form and the API (through `clean()`).
    """
    if value and not _HOSTNAME_RE.match(value):
        raise ValidationError(
            f"'{value}' is not a host name: enter one such as customer.ringrx.com, "
            "without https://, a path or spaces.",
            code="invalid_pbx_domain",
        )


def _new_webhook_key() -> str:
    return secrets.token_urlsafe(18)


def _new_webhook_secret() -> str:
    return secrets.token_urlsafe(32)


class Account(models.Model):
    """A reseller. Owns organizations and its custom integration specs."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class OrganizationQuerySet(models.QuerySet["Organization"]):
    def for_user(self, user: object) -> OrganizationQuerySet:
        """Organizations `user` may see: all of its accounts' (reseller admin) or its own."""
        if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
            return self.none()
        return self.filter(
            Q(account__memberships__user=user, account__memberships__role=Membership.Role.RESELLER)
            | Q(memberships__user=user, memberships__role=Membership.Role.ORG_ADMIN)
        ).distinct()


class Organization(models.Model):
    """A customer company of a reseller, with its PBX domain."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="organizations")
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80)
    pbx_domain = models.CharField(
        "PBX domain", max_length=253, blank=True, help_text="For example customer.ringrx.com"
    )
    default_region = models.CharField(
        max_length=2,
        default="US",
        help_text="ISO country code used to read phone numbers written in national format.",
    )
    # Public identifier of the org in webhook URLs; not a secret.
    webhook_key = models.CharField(max_length=40, unique=True, default=_new_webhook_key)
    webhook_secret = EncryptedTextField(default=_new_webhook_secret)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = OrganizationQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "slug"], name="organization_slug_per_account"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        self.default_region = (self.default_region or "").upper()
        if not region_is_valid(self.default_region):
            errors["default_region"] = [f"'{self.default_region}' is not a known region code."]
        self.pbx_domain = normalize_pbx_domain(self.pbx_domain)
        try:
            validate_pbx_domain(self.pbx_domain)
        except ValidationError as exc:
            errors["pbx_domain"] = exc.messages
        if errors:
            raise ValidationError(errors)

    def validate_constraints(self, exclude: object = None) -> None:
        """Report a slug already used in the account on the `slug` field, not as a
        non-field error (the database constraint still guards against races)."""
        if (
            not (exclude and "slug" in exclude)
            and Organization.objects.filter(account_id=self.account_id, slug=self.slug)
            .exclude(pk=self.pk)
            .exists()
        ):
            raise ValidationError({"slug": f"'{self.slug}' is already used in this account."})
        super().validate_constraints(exclude=exclude)


class OrganizationScopedQuerySet(models.QuerySet):
    """Rows that belong to an organization. `for_user` keeps those of the organizations `user`
    may see — the one place tenant scoping is decided, for every such model.

    `organization_path` is the lookup from the row to its organization.
    """

    organization_path = "organization"

    def for_user(self, user: object) -> OrganizationScopedQuerySet:
        return self.filter(**{f"{self.organization_path}__in": Organization.objects.for_user(user)})


class PbxUser(models.Model):
    """An extension (user) of an organization's PBX."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="pbx_users"
    )
    extension = models.CharField(max_length=20)
    name = models.CharField(max_length=200)
    email = models.EmailField(blank=True)
    mobile = models.CharField(max_length=20, blank=True, help_text="E.164")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = OrganizationScopedQuerySet.as_manager()

    class Meta:
        ordering = ["organization", "extension"]
        verbose_name = "PBX user"
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "extension"], name="pbx_user_extension_per_org"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.extension} {self.name}"

    def clean(self) -> None:
        self.extension = (self.extension or "").strip()
        if not self.extension.isdigit():
            raise ValidationError({"extension": "An extension is digits only, e.g. 101."})
        if self.mobile:
            region = self.organization.default_region if self.organization_id else "US"
            self.mobile = phone_to_e164(self.mobile, region=region, field="mobile")

    def validate_constraints(self, exclude: object = None) -> None:
        """Report an extension already used in the organization on the `extension` field,
        not as a non-field error (the database constraint still guards against races)."""
        if (
            not (exclude and "extension" in exclude)
            and PbxUser.objects.filter(
                organization_id=self.organization_id, extension=self.extension
            )
            .exclude(pk=self.pk)
            .exists()
        ):
            raise ValidationError(
                {"extension": f"Extension {self.extension} is already used in this organization."}
            )
        super().validate_constraints(exclude=exclude)


class SmsNumber(models.Model):
    """An E.164 number of an organization that sends and receives SMS/MMS."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="sms_numbers")
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="sms_numbers"
    )
    number = models.CharField(max_length=20, help_text="E.164, e.g. +14155550100")
    label = models.CharField(max_length=100, blank=True)
    users = models.ManyToManyField(PbxUser, blank=True, related_name="sms_numbers")
    # The SMS integration that sends and receives for this number.
    installation = models.ForeignKey(
        "integrations.Installation",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="sms_numbers",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = OrganizationScopedQuerySet.as_manager()

    class Meta:
        ordering = ["organization", "number"]
        verbose_name = "SMS number"
        constraints = [
            models.UniqueConstraint(fields=["account", "number"], name="sms_number_per_account"),
        ]

    def __str__(self) -> str:
        return self.number

    def clean(self) -> None:
        region = self.organization.default_region if self.organization_id else "US"
        self.number = phone_to_e164(self.number, region=region, field="number")
        if self.organization_id:
            self.account_id = self.organization.account_id
        if (
            self.account_id
            and SmsNumber.objects.filter(account_id=self.account_id, number=self.number)
            .exclude(pk=self.pk)
            .exists()
        ):
            raise ValidationError({"number": f"{self.number} is already used in this account."})


class Membership(models.Model):
    """What a portal user may manage: a whole account, or one organization."""

    class Role(models.TextChoices):
        RESELLER = "reseller_admin", "Reseller admin"
        ORG_ADMIN = "org_admin", "Organization admin"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=20, choices=Role.choices)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="memberships")
    organization = models.ForeignKey(
        Organization,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="memberships",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(Q(role="reseller_admin", organization__isnull=True))
                | (Q(role="org_admin", organization__isnull=False)),
                name="membership_role_scope",
            ),
            models.UniqueConstraint(
                fields=["user", "account"],
                condition=Q(role="reseller_admin"),
                name="one_reseller_membership_per_account",
            ),
            models.UniqueConstraint(
                fields=["user", "organization"],
                condition=Q(role="org_admin"),
                name="one_org_membership_per_org",
            ),
        ]

    def __str__(self) -> str:
        target = self.organization or self.account
        return f"{self.user} — {self.get_role_display()} of {target}"

    def clean(self) -> None:
        if self.organization_id and self.organization.account_id != self.account_id:
            raise ValidationError({"organization": "The organization belongs to another account."})
