"""Reads of an organization's inbox events (the accepted webhooks, `InboxEvent`), for the
Events page and API where an admin finds what failed and runs it again.

Every function takes the acting user and starts from `InboxEvent.objects.for_user`, so another
tenant's events are never listed and a foreign id is a 404."""

from __future__ import annotations

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from integrations.models import InboxEvent
from tenants.models import Organization

# States from which `integrations.inbox.inbox_event_replay` runs an event again.
REPLAYABLE_STATES: tuple[str, ...] = (InboxEvent.State.FAILED, InboxEvent.State.IGNORED)


def inbox_event_list(
    *, user: object, organization: Organization, state: str | None = None
) -> QuerySet[InboxEvent]:
    """The organization's inbox events that `user` may see, newest first; `state` filters them."""
    qs = (
        InboxEvent.objects.for_user(user)
        .filter(organization=organization)
        .order_by("-received_at", "-pk")
    )
    if state:
        qs = qs.filter(state=state)
    return qs


def inbox_event_get(*, user: object, organization: Organization, pk: int | str) -> InboxEvent:
    """One inbox event of the organization that `user` may see; Http404 otherwise."""
    return get_object_or_404(inbox_event_list(user=user, organization=organization), pk=pk)


def inbox_event_replayable(*, event: InboxEvent) -> bool:
    """True when an admin may run `event` again (it failed or was ignored)."""
    return event.state in REPLAYABLE_STATES
