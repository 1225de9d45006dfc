"""User mapping page of a CRM installation: fetch CRM users (a Celery task whose progress the
page polls), then map each PBX user to a CRM user.

Every view looks the installation up through `integrations.selectors.installation_get`
first, so another tenant's installation is a 404 whatever the method.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from integrations import selectors
from integrations.models import Installation, UserFetch
from integrations.user_mapping import (
    UserMappingRow,
    crm_user_list,
    crm_users_fetch_is_active,
    crm_users_fetch_latest,
    crm_users_fetch_start,
    user_mapping_reset,
    user_mapping_rows,
    user_mapping_set,
)

# Select values besides a CRM user's id.
CHOICE_AUTO = "auto"
CHOICE_NONE = ""


def _field_name(row: UserMappingRow) -> str:
    return f"crm_user_{row.pbx_user.pk}"


def _current_choice(row: UserMappingRow) -> str:
    """The select value that represents the row as stored."""
    if not row.manual:
        return CHOICE_AUTO
    return str(row.crm_user.pk) if row.crm_user else CHOICE_NONE


def _fetch_status(fetch: UserFetch | None) -> dict[str, object]:
    if fetch is None:
        return {"state": "none", "active": False, "fetched": 0, "error": "", "message": ""}
    active = crm_users_fetch_is_active(fetch)
    if fetch.state == UserFetch.State.DONE:
        message = f"Fetched {fetch.fetched} CRM user(s)."
    elif fetch.state == UserFetch.State.FAILED:
        message = f"Fetching CRM users failed: {fetch.error}"
    elif fetch.state == UserFetch.State.RUNNING:
        message = "Fetching CRM users…"
    else:
        message = "Waiting for a worker to fetch CRM users…"
    return {
        "id": fetch.pk,
        "state": fetch.state,
        "active": active,
        "fetched": fetch.fetched,
        "error": fetch.error,
        "message": message,
        "created_at": fetch.created_at.isoformat(),
        "finished_at": fetch.finished_at.isoformat() if fetch.finished_at else None,
    }


def _apply_choices(
    request: HttpRequest, installation: Installation, rows: list[UserMappingRow]
) -> tuple[int, list[str]]:
    """Apply the rows whose posted value differs from what is stored. An unchanged row is
    left alone, so saving the page never turns an automatic match into a manual one."""
    crm_users = {str(c.pk): c for c in crm_user_list(installation=installation)}
    changed, errors = 0, []
    with transaction.atomic():
        for row in rows:
            name = _field_name(row)
            if name not in request.POST:
                continue
            value = request.POST[name].strip()
            if value == _current_choice(row):
                continue
            try:
                if value == CHOICE_AUTO:
                    user_mapping_reset(installation=installation, pbx_user=row.pbx_user)
                elif value == CHOICE_NONE:
                    user_mapping_set(
                        installation=installation, pbx_user=row.pbx_user, crm_user=None
                    )
                elif value in crm_users:
                    user_mapping_set(
                        installation=installation,
                        pbx_user=row.pbx_user,
                        crm_user=crm_users[value],
                    )
                else:
                    errors.append(f"{row.pbx_user}: that CRM user is not one of this CRM's.")
                    continue
            except ValidationError as exc:
                errors.append(f"{row.pbx_user}: {' '.join(exc.messages)}")
                continue
            changed += 1
        if errors:
            transaction.set_rollback(True)
            changed = 0
    return changed, errors


@login_required
def user_mapping(request: HttpRequest, installation_id: int) -> HttpResponse:
    installation = selectors.installation_get(user=request.user, pk=installation_id)
    if installation.spec_version.spec.spec_class != "crm":
        raise Http404("Users are mapped for CRM integrations only.")
    rows = user_mapping_rows(installation=installation)
    if request.method == "POST":
        changed, errors = _apply_choices(request, installation, rows)
        if errors:
            for error in errors:
                messages.error(request, error)
            messages.warning(request, "Nothing was saved; correct the rows above and save again.")
        else:
            messages.success(
                request,
                f"Saved {changed} change(s) to the user mapping." if changed else "No changes.",
            )
        return redirect("integrations:user_mapping", installation_id=installation.pk)
    crm_users = list(crm_user_list(installation=installation))
    fetch = crm_users_fetch_latest(installation=installation)
    return render(
        request,
        "integrations/user_mapping.html",
        {
            "installation": installation,
            "organization": installation.organization,
            "rows": [
                {"row": row, "field": _field_name(row), "choice": _current_choice(row)}
                for row in rows
            ],
            "present_crm_users": [c for c in crm_users if c.present],
            "crm_user_count": len(crm_users),
            "fetch": fetch,
            "fetch_status": _fetch_status(fetch),
            "status_url": reverse("integrations:user_mapping_fetch_status", args=[installation.pk]),
            "counts": {
                status: sum(1 for r in rows if r.status == status)
                for status in ("auto", "manual", "unmatched", "disappeared")
            },
        },
    )


@login_required
def user_mapping_fetch(request: HttpRequest, installation_id: int) -> HttpResponse:
    installation = selectors.installation_get(user=request.user, pk=installation_id)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    try:
        crm_users_fetch_start(installation=installation)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect("integrations:user_mapping", installation_id=installation.pk)


@login_required
def user_mapping_fetch_status(request: HttpRequest, installation_id: int) -> JsonResponse:
    """The latest fetch's progress, polled by static/js/user_mapping.js."""
    installation = selectors.installation_get(user=request.user, pk=installation_id)
    fetch = crm_users_fetch_latest(installation=installation)
    status = _fetch_status(fetch)
    status["crm_users"] = crm_user_list(installation=installation, include_absent=False).count()
    return JsonResponse(status)
