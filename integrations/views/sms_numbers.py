"""SMS numbers of an SMS installation: bind the organization's numbers to it, assign them to
PBX users, and show the webhook URL to give the provider."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from integrations import selectors
from integrations.models import Installation
from integrations.sms_numbers import sms_number_bind, sms_number_candidates, sms_webhook_url
from tenants import selectors as tenant_selectors
from tenants.models import PbxUser, SmsNumber
from tenants.phones import phone_display


def _apply(
    request: HttpRequest,
    installation: Installation,
    numbers: list[SmsNumber],
    pbx_users: list[PbxUser],
) -> tuple[int, list[str]]:
    """Bind/unbind and assign every number the form showed. All or nothing."""
    users_by_pk = {str(u.pk): u for u in pbx_users}
    shown = set(request.POST.getlist("numbers"))
    bound = set(request.POST.getlist("bound"))
    changed, errors = 0, []
    with transaction.atomic():
        for number in numbers:
            key = str(number.pk)
            if key not in shown:
                continue
            user_ids = request.POST.getlist(f"users_{key}")
            unknown = [i for i in user_ids if i not in users_by_pk]
            if unknown:
                errors.append(f"{number.number}: choose PBX users of {installation.organization}.")
                continue
            users = [users_by_pk[i] for i in user_ids]
            if key in bound:
                target = installation
            elif number.installation_id == installation.pk:
                target = None
            else:
                target = number.installation  # bound elsewhere (or nowhere): unchanged
            same_target = (target.pk if target else None) == number.installation_id
            same_users = set(user_ids) == {str(u.pk) for u in number.users.all()}
            if same_target and same_users:
                continue
            try:
                sms_number_bind(installation=target, sms_number=number, users=users)
            except ValidationError as exc:
                errors.append(f"{number.number}: {' '.join(exc.messages)}")
                continue
            changed += 1
        if errors:
            transaction.set_rollback(True)
            changed = 0
    return changed, errors


@login_required
def sms_numbers(request: HttpRequest, installation_id: int) -> HttpResponse:
    installation = selectors.installation_get(user=request.user, pk=installation_id)
    organization = installation.organization
    numbers = list(sms_number_candidates(installation=installation))
    pbx_users = list(tenant_selectors.pbx_user_list(user=request.user, organization=organization))
    if request.method == "POST":
        changed, errors = _apply(request, installation, numbers, pbx_users)
        for error in errors:
            messages.error(request, error)
        if errors:
            messages.warning(request, "Nothing was saved.")
        else:
            messages.success(
                request, f"Saved {changed} SMS number(s)." if changed else "No changes."
            )
        return redirect("integrations:sms_numbers", installation_id=installation.pk)
    is_sms = installation.spec_version.spec.spec_class == "sms"
    rows = []
    for number in numbers:
        assigned = {u.pk for u in number.users.all()}
        rows.append(
            {
                "number": number,
                "display": phone_display(number.number),
                "bound_here": number.installation_id == installation.pk,
                "bound_elsewhere": number.installation
                if number.installation_id not in (None, installation.pk)
                else None,
                "users": [(u, u.pk in assigned) for u in pbx_users],
            }
        )
    return render(
        request,
        "integrations/sms_numbers.html",
        {
            "installation": installation,
            "organization": organization,
            "is_sms": is_sms,
            "rows": rows,
            "has_pbx_users": bool(pbx_users),
            "webhook_url": sms_webhook_url(installation=installation) if is_sms else "",
        },
    )
