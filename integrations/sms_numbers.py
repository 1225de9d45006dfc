"""SMS numbers of an SMS installation: which provider integration sends and receives for each
of the organization's numbers, and where the provider posts inbound messages.

Callers pass an `Installation` and `SmsNumber`s obtained through the tenant-scoped
selectors; the services re-check that both belong to one organization.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet

from integrations.connections import sms_webhook_path
from integrations.models import Installation, IntegrationSpec
from tenants.models import PbxUser, SmsNumber
from tenants.services import sms_number_assign


def sms_installation_require(installation: Installation) -> None:
    """ValidationError unless `installation` is of an `sms` spec."""
    if installation.spec_version.spec.spec_class != IntegrationSpec.SpecClass.SMS:
        raise ValidationError(
            {"installation": "Only an SMS integration can send and receive for a number."}
        )


def sms_webhook_url(*, installation: Installation) -> str:
    """The absolute URL the provider posts inbound messages and statuses to."""
    return settings.PUBLIC_BASE_URL + sms_webhook_path(installation)


@transaction.atomic
def sms_number_bind(
    *,
    installation: Installation | None,
    sms_number: SmsNumber,
    users: list[PbxUser] | None = None,
) -> SmsNumber:
    """Bind `sms_number` to the SMS `installation` (None: unbind it) and, when `users` is
    given, assign the number to exactly those PBX users.

    Raises ValidationError when the installation is not an SMS integration or belongs to
    another organization than the number, or a user is of another organization.
    """
    if installation is not None:
        sms_installation_require(installation)
        if installation.organization_id != sms_number.organization_id:
            raise ValidationError(
                {"installation": "The integration belongs to another organization."}
            )
    sms_number.installation = installation
    sms_number.full_clean()
    sms_number.save(update_fields=["installation"])
    if users is not None:
        sms_number_assign(sms_number=sms_number, users=users)
    return sms_number


def sms_number_candidates(*, installation: Installation) -> QuerySet[SmsNumber]:
    """Every SMS number of the installation's organization (bound here, elsewhere, or not at
    all), with its users and current installation."""
    return (
        SmsNumber.objects.filter(organization_id=installation.organization_id)
        .select_related("installation__spec_version__spec")
        .prefetch_related("users")
        .order_by("number", "pk")
    )


def sms_number_list_bound(*, installation: Installation) -> QuerySet[SmsNumber]:
    """The numbers bound to `installation`."""
    return sms_number_candidates(installation=installation).filter(installation=installation)
