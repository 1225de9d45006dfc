"""OAuth connect: *Connect* sends the admin to the CRM's authorize URL; the CRM sends them
back to `/integrations/oauth/callback/` (one URL for every installation — the `state` says
which), which finishes the connect and returns to the installation page with "Connected as …"
or an error that says what to do.
"""

from __future__ import annotations

import contextlib

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect

from integrations import selectors, services
from integrations.engine.errors import IntegrationError, SpecError

# RFC 6749 4.1.2.1 error codes, in words an admin can act on.
PROVIDER_ERRORS = {
    "access_denied": "Access was denied on the CRM's page, so nothing was connected. Click "
    "Connect and choose Accept to connect.",
    "invalid_scope": "The CRM refused the permissions this integration asks for. Check that "
    "the OAuth app in the CRM allows them.",
    "unauthorized_client": "The CRM does not allow this OAuth app to connect. Check the "
    "Client ID in the integration's settings.",
    "invalid_request": "The CRM refused the connection request. Check the integration's "
    "settings (Client ID, URLs) and connect again.",
    "server_error": "The CRM had an error. Try connecting again in a few minutes.",
    "temporarily_unavailable": "The CRM is temporarily unavailable. Try again in a few minutes.",
}


def _post_only(request: HttpRequest) -> HttpResponse | None:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    return None


@login_required
def oauth_connect(request: HttpRequest, installation_id: int) -> HttpResponse:
    """POST: redirect to the CRM's authorize URL with a fresh single-use state."""
    installation = selectors.installation_get(user=request.user, pk=installation_id)
    if (refused := _post_only(request)) is not None:
        return refused
    try:
        url = services.oauth_connect_start(installation=installation, user=request.user)
    except SpecError as exc:
        messages.error(request, f"Cannot connect: {exc}. Check the integration's settings.")
        return redirect("integrations:installation_detail", installation_id=installation.pk)
    return redirect(url)


@login_required
def oauth_disconnect(request: HttpRequest, installation_id: int) -> HttpResponse:
    """POST: revoke what can be revoked and wipe the tokens."""
    installation = selectors.installation_get(user=request.user, pk=installation_id)
    if (refused := _post_only(request)) is not None:
        return refused
    try:
        services.oauth_disconnect(installation=installation)
    except SpecError as exc:
        messages.error(request, "; ".join(p.message for p in exc.problems) + ".")
        return redirect("integrations:installation_detail", installation_id=installation.pk)
    if installation.status_detail:
        messages.warning(request, installation.status_detail)
    else:
        messages.success(request, f"{installation.spec.name} was disconnected.")
    return redirect("integrations:installation_detail", installation_id=installation.pk)


@login_required
def oauth_callback(request: HttpRequest) -> HttpResponse:
    """Where the CRM sends the admin back: `?code=…&state=…` or `?error=…&state=…`."""
    state = request.GET.get("state", "")
    known = services.oauth_state_installation(state=state, user=request.user)
    back = (
        redirect("integrations:installation_detail", installation_id=known.pk)
        if known is not None
        else redirect("dashboard")
    )
    provider_error = request.GET.get("error")
    if provider_error:
        detail = request.GET.get("error_description", "")
        message = PROVIDER_ERRORS.get(
            provider_error, f"The CRM refused the connection ({provider_error})."
        )
        if detail and provider_error not in PROVIDER_ERRORS:
            message += f" {detail[:300]}"
        # The state is used up either way, so the same answer cannot be replayed later.
        with contextlib.suppress(services.OAuthStateError):
            services.oauth_state_consume(state=state, user=request.user)
        messages.error(request, message)
        return back
    try:
        installation = services.oauth_connect_finish(
            state=state, code=request.GET.get("code", ""), user=request.user
        )
    except services.OAuthStateError as exc:
        messages.error(request, exc.message)
        return back
    except (IntegrationError, SpecError) as exc:
        messages.error(request, f"Connecting failed: {exc}")
        return back
    who = f" as {installation.connected_as}" if installation.connected_as else ""
    messages.success(request, f"Connected{who}.")
    return redirect("integrations:installation_detail", installation_id=installation.pk)
