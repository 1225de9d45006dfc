"""Calls of an organization and their CRM activities: the recent calls with the activity of
each CRM integration (state, error, a Retry button), and the review page where an admin picks
the contact of an activity held because several contacts matched.

Every view looks the organization up through the tenant selectors first and the activity
within it, so another tenant's ids are a 404."""

from __future__ import annotations

from django.contrib import messages as flash
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from integrations.call_logging import (
    RECENT_CALLS_LIMIT,
    call_activities_held,
    call_activity_get,
    call_activity_resolve,
    call_activity_retry,
    call_list,
    call_log_installations,
    call_notices,
)
from tenants import selectors as tenant_selectors


def _error_text(exc: ValidationError) -> str:
    return " ".join(exc.messages)


@login_required
def calls(request: HttpRequest, org_id: int) -> HttpResponse:
    """The organization's recent calls, each with its activity per CRM integration."""
    organization = tenant_selectors.organization_get(user=request.user, pk=org_id)
    recent = list(call_list(user=request.user, organization=organization)[:RECENT_CALLS_LIMIT])
    return render(
        request,
        "integrations/calls.html",
        {
            "organization": organization,
            "calls": recent,
            "installations": call_log_installations(organization=organization),
            "held_count": call_activities_held(
                user=request.user, organization=organization
            ).count(),
            "notices": call_notices(user=request.user, organization=organization),
        },
    )


@login_required
def calls_review(request: HttpRequest, org_id: int) -> HttpResponse:
    """Activities held for review: several contacts matched; an admin picks one."""
    organization = tenant_selectors.organization_get(user=request.user, pk=org_id)
    held = list(call_activities_held(user=request.user, organization=organization)[:200])
    return render(
        request,
        "integrations/calls_review.html",
        {"organization": organization, "held": held},
    )


@login_required
@require_POST
def call_activity_retry_view(request: HttpRequest, org_id: int, activity_id: int) -> HttpResponse:
    """Run a failed activity again."""
    organization = tenant_selectors.organization_get(user=request.user, pk=org_id)
    activity = call_activity_get(user=request.user, organization=organization, pk=activity_id)
    try:
        activity = call_activity_retry(activity=activity)
    except ValidationError as exc:
        flash.error(request, _error_text(exc))
    else:
        activity.refresh_from_db()
        if activity.state == "failed":
            flash.error(request, f"Retried; it failed again: {activity.last_error}")
        else:
            flash.success(request, f"Call {activity.call.call_id}: retried ({activity.state}).")
    return redirect(reverse("integrations:calls", args=[organization.pk]))


@login_required
@require_POST
def call_activity_resolve_view(request: HttpRequest, org_id: int, activity_id: int) -> HttpResponse:
    """Log a held activity to the contact the admin picked."""
    organization = tenant_selectors.organization_get(user=request.user, pk=org_id)
    activity = call_activity_get(user=request.user, organization=organization, pk=activity_id)
    try:
        activity = call_activity_resolve(
            activity=activity, contact_id=request.POST.get("contact_id", "")
        )
    except ValidationError as exc:
        flash.error(request, _error_text(exc))
    else:
        activity.refresh_from_db()
        if activity.state == "failed":
            flash.error(request, f"The activity could not be written: {activity.last_error}")
        else:
            flash.success(
                request,
                f"Call {activity.call.call_id} logged to contact {activity.contact_id} "
                f"({activity.state}).",
            )
    return redirect(reverse("integrations:calls_review", args=[organization.pk]))
