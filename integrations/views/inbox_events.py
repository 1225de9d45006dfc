"""Events of an organization: every accepted webhook (the inbox), filterable by state,
with a Run again button on the failed and ignored ones.

Every view looks the organization up through the tenant selectors first and the event within
it, so another tenant's ids are a 404."""

from __future__ import annotations

from django.contrib import messages as flash
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from integrations.inbox import inbox_event_replay
from integrations.inbox_selectors import (
    inbox_event_get,
    inbox_event_list,
    inbox_event_replayable,
)
from integrations.models import InboxEvent
from tenants import selectors as tenant_selectors

EVENTS_PER_PAGE = 50
REPLAY_REFUSED = "Only failed or ignored events can be run again."


@login_required
def inbox_events(request: HttpRequest, org_id: int) -> HttpResponse:
    """The organization's accepted webhooks, newest first, `?state=` filtering them."""
    organization = tenant_selectors.organization_get(user=request.user, pk=org_id)
    state = request.GET.get("state") or None
    if state not in InboxEvent.State.values:
        state = None
    events = inbox_event_list(user=request.user, organization=organization, state=state)
    page = Paginator(events, EVENTS_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "integrations/inbox_events.html",
        {"organization": organization, "state": state, "page": page},
    )


@login_required
@require_POST
def inbox_event_replay_view(request: HttpRequest, org_id: int, event_pk: int) -> HttpResponse:
    """Run a failed or ignored event again."""
    organization = tenant_selectors.organization_get(user=request.user, pk=org_id)
    event = inbox_event_get(user=request.user, organization=organization, pk=event_pk)
    if not inbox_event_replayable(event=event):
        flash.error(request, REPLAY_REFUSED)
    else:
        inbox_event_replay(event=event)
        flash.success(request, f"Event {event.pk} queued again")
    return redirect(reverse("integrations:inbox_events", args=[organization.pk]))
