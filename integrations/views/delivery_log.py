"""Delivery log of an installation: every outbound request attempt, filterable by status,
paginated, with a detail page showing the redacted request and response bodies."""

from __future__ import annotations

import json

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from integrations import selectors
from integrations.delivery_log import STATUS_CHOICES, delivery_log_get, delivery_log_list

ENTRIES_PER_PAGE = 50


def _pretty(text: str) -> str:
    """JSON bodies indented for reading; anything else as it was logged."""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except (TypeError, ValueError):
        return text


@login_required
def delivery_log(request: HttpRequest, installation_id: int) -> HttpResponse:
    installation = selectors.installation_get(user=request.user, pk=installation_id)
    status = request.GET.get("status") or None
    if status not in STATUS_CHOICES:
        status = None
    entries = delivery_log_list(user=request.user, installation=installation, status=status)
    page = Paginator(entries, ENTRIES_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "integrations/delivery_log.html",
        {
            "installation": installation,
            "organization": installation.organization,
            "status": status,
            "page": page,
        },
    )


@login_required
def delivery_log_detail(request: HttpRequest, installation_id: int, entry_id: int) -> HttpResponse:
    installation = selectors.installation_get(user=request.user, pk=installation_id)
    entry = delivery_log_get(user=request.user, pk=entry_id)
    if entry.installation_id != installation.pk:
        raise Http404("No such entry in this integration's log.")
    return render(
        request,
        "integrations/delivery_log_detail.html",
        {
            "installation": installation,
            "organization": installation.organization,
            "entry": entry,
            "request_body": _pretty(entry.request_body),
            "response_body": _pretty(entry.response_body),
        },
    )
