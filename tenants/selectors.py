"""Reads of tenant data. Every function takes the acting user and starts from `for_user`,
so a user of one reseller can never reach another's rows: a foreign id is a 404."""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet
from django.shortcuts import get_object_or_404

from tenants.models import Account, Membership, Organization, PbxUser, SmsNumber


def accounts_managed_by(*, user: object) -> QuerySet[Account]:
    """Accounts of which `user` is a reseller admin."""
    if not getattr(user, "is_authenticated", False):
        return Account.objects.none()
    return Account.objects.filter(
        memberships__user=user, memberships__role=Membership.Role.RESELLER
    ).distinct()


def user_is_reseller_admin(*, user: object) -> bool:
    return accounts_managed_by(user=user).exists()


def organization_list(*, user: object, search: str = "") -> QuerySet[Organization]:
    qs = Organization.objects.for_user(user).select_related("account")
    if search:
        qs = qs.filter(
            Q(name__icontains=search) | Q(slug__icontains=search) | Q(pbx_domain__icontains=search)
        )
    return qs.annotate(
        pbx_user_count=Count("pbx_users", distinct=True),
        sms_number_count=Count("sms_numbers", distinct=True),
    ).order_by("name", "pk")


def tenant_counts(*, user: object) -> dict[str, int]:
    """How many organizations, PBX users and SMS numbers `user` may see."""
    return {
        "organizations": Organization.objects.for_user(user).count(),
        "pbx_users": PbxUser.objects.for_user(user).count(),
        "sms_numbers": SmsNumber.objects.for_user(user).count(),
    }


def organization_get(*, user: object, pk: int | str) -> Organization:
    """The organization `pk` if `user` may see it; Http404 otherwise."""
    return get_object_or_404(Organization.objects.for_user(user).select_related("account"), pk=pk)


def organization_can_manage(*, user: object, organization: Organization) -> bool:
    """True when `user` may delete the org or change its account-level settings."""
    return accounts_managed_by(user=user).filter(pk=organization.account_id).exists()


def pbx_user_list(
    *, user: object, organization: Organization, search: str = ""
) -> QuerySet[PbxUser]:
    qs = PbxUser.objects.for_user(user).filter(organization=organization)
    if search:
        qs = qs.filter(
            Q(name__icontains=search) | Q(extension__icontains=search) | Q(email__icontains=search)
        )
    return qs.order_by("extension", "pk")


def pbx_user_get(*, user: object, organization: Organization, pk: int | str) -> PbxUser:
    return get_object_or_404(
        PbxUser.objects.for_user(user).filter(organization=organization), pk=pk
    )


def sms_number_list(*, user: object, organization: Organization) -> QuerySet[SmsNumber]:
    return (
        SmsNumber.objects.for_user(user)
        .filter(organization=organization)
        .prefetch_related("users")
        .order_by("number", "pk")
    )


def sms_number_get(*, user: object, organization: Organization, pk: int | str) -> SmsNumber:
    return get_object_or_404(
        SmsNumber.objects.for_user(user).filter(organization=organization), pk=pk
    )
