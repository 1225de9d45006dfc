"""Web UI of an organization's outbound callbacks: list (with the notices of disabled ones),
detail with recent deliveries (a Retry button on the failed ones), create, edit, delete, send
a test.

Every view looks the organization up through `tenants.selectors.organization_get` (and the
subscription through `integrations.callbacks.callback_subscription_get`) before anything else,
so another tenant's ids are 404 whatever the method. Writes go through the services of
`integrations.callbacks`; changes happen on POST only. Secrets (Basic password, signing secret)
are write-only: a blank field keeps the stored value, and a generated signing secret is shown
once in a flash message.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from integrations import callbacks
from integrations.models import CallbackDelivery, CallbackSubscription
from tenants import selectors as tenant_selectors
from tenants.forms import add_service_errors

RECENT_DELIVERIES = 25


class CallbackSubscriptionForm(forms.Form):
    """Create or edit a callback. Password and signing secret are never shown back."""

    name = forms.CharField(max_length=200, help_text="Shown in the delivery log.")
    callback_type = forms.ChoiceField(
        label="Type", choices=CallbackSubscription.CallbackType.choices
    )
    url = forms.CharField(
        label="URL",
        max_length=2000,
        help_text="Tokens such as {caller} or {id} are replaced by the event's values "
        "(URL-encoded). See the token list below.",
        widget=forms.TextInput(attrs={"placeholder": "https://example.com/hooks/cdr?id={id}"}),
    )
    auth_username = forms.CharField(
        label="Basic auth username", max_length=200, required=False, help_text="Sent as is."
    )
    auth_password = forms.CharField(
        label="Basic auth password",
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Sent as is. Leave blank to keep the current password.",
    )
    clear_auth_password = forms.BooleanField(label="Remove the password", required=False)
    headers = forms.CharField(
        label="Custom headers",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "AuthToken:{id}"}),
        help_text="One Name:value per line; values may contain tokens.",
    )
    bindings = forms.CharField(
        label="Bound to",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Numbers (sms), mailboxes (voicemail, fax) or groups (call_alert), one per "
        "line or comma-separated. Empty: every event of the type.",
    )
    rotate_signing_secret = forms.BooleanField(
        label="Generate a new signing secret",
        required=False,
        help_text="The new secret is shown once; the old one stops working at once.",
    )
    active = forms.BooleanField(label="Active", required=False, initial=True)

    def __init__(self, *args: Any, subscription: CallbackSubscription | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.subscription = subscription
        if subscription is None:
            del self.fields["clear_auth_password"]
            del self.fields["rotate_signing_secret"]
            self.fields["auth_password"].help_text = "Sent as is."

    def clean_bindings(self) -> list[str]:
        text = self.cleaned_data.get("bindings") or ""
        return [item.strip() for item in text.replace(",", "\n").splitlines() if item.strip()]


def _initial(subscription: CallbackSubscription) -> dict[str, Any]:
    return {
        "name": subscription.name,
        "callback_type": subscription.callback_type,
        "url": subscription.url,
        "auth_username": subscription.auth_username,
        "headers": subscription.headers,
        "bindings": "\n".join(subscription.bindings or []),
        "active": subscription.active,
    }


def _posted(request: HttpRequest) -> Any:
    return request.POST if request.method == "POST" else None


def _token_help() -> dict[str, tuple[str, ...]]:
    return dict(callbacks.TOKEN_TABLES)


def _show_secret_once(request: HttpRequest, secret: str) -> None:
    if secret:
        messages.warning(
            request,
            f"Signing secret: {secret} — copy it now; it will not be shown again. Verify "
            "deliveries with any Standard Webhooks library.",
        )


@login_required
def callback_list(request: HttpRequest, org_id: int) -> HttpResponse:
    organization = tenant_selectors.organization_get(user=request.user, pk=org_id)
    subscriptions = callbacks.callback_subscription_list(
        user=request.user, organization=organization
    )
    return render(
        request,
        "integrations/callbacks.html",
        {
            "organization": organization,
            "subscriptions": subscriptions,
            "notices": callbacks.callback_notices(user=request.user, organization=organization),
        },
    )


@login_required
def callback_detail(request: HttpRequest, org_id: int, callback_id: int) -> HttpResponse:
    organization = tenant_selectors.organization_get(user=request.user, pk=org_id)
    subscription = callbacks.callback_subscription_get(
        user=request.user, organization=organization, pk=callback_id
    )
    deliveries = callbacks.callback_delivery_list(user=request.user, subscription=subscription)
    return render(
        request,
        "integrations/callbacks_detail.html",
        {
            "organization": organization,
            "subscription": subscription,
            "deliveries": deliveries[:RECENT_DELIVERIES],
            "tokens": callbacks.TOKEN_TABLES.get(subscription.callback_type, ()),
        },
    )


@login_required
def callback_create(request: HttpRequest, org_id: int) -> HttpResponse:
    organization = tenant_selectors.organization_get(user=request.user, pk=org_id)
    form = CallbackSubscriptionForm(_posted(request), initial={"active": True})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            subscription, secret = callbacks.callback_subscription_create(
                organization=organization,
                name=data["name"],
                callback_type=data["callback_type"],
                url=data["url"],
                auth_username=data["auth_username"],
                auth_password=data["auth_password"],
                headers=data["headers"],
                bindings=data["bindings"],
                active=data["active"],
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Callback {subscription.name} created.")
            _show_secret_once(request, secret)
            return redirect("callbacks:detail", org_id=organization.pk, callback_id=subscription.pk)
    return render(
        request,
        "integrations/callbacks_form.html",
        {
            "organization": organization,
            "subscription": None,
            "form": form,
            "token_tables": _token_help(),
            "cancel_url": reverse("callbacks:list", args=[organization.pk]),
        },
    )


@login_required
def callback_edit(request: HttpRequest, org_id: int, callback_id: int) -> HttpResponse:
    organization = tenant_selectors.organization_get(user=request.user, pk=org_id)
    subscription = callbacks.callback_subscription_get(
        user=request.user, organization=organization, pk=callback_id
    )
    form = CallbackSubscriptionForm(
        _posted(request), initial=_initial(subscription), subscription=subscription
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        password: str | None = data["auth_password"] or None
        if data.get("clear_auth_password"):
            password = ""
        new_secret = (
            callbacks.callback_signing_secret_new() if data.get("rotate_signing_secret") else None
        )
        try:
            callbacks.callback_subscription_update(
                subscription=subscription,
                name=data["name"],
                callback_type=data["callback_type"],
                url=data["url"],
                auth_username=data["auth_username"],
                auth_password=password,
                headers=data["headers"],
                signing_secret=new_secret,
                bindings=data["bindings"],
                active=data["active"],
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Callback {subscription.name} saved.")
            _show_secret_once(request, new_secret or "")
            return redirect("callbacks:detail", org_id=organization.pk, callback_id=subscription.pk)
    return render(
        request,
        "integrations/callbacks_form.html",
        {
            "organization": organization,
            "subscription": subscription,
            "form": form,
            "token_tables": _token_help(),
            "cancel_url": reverse("callbacks:detail", args=[organization.pk, subscription.pk]),
        },
    )


@login_required
def callback_delete(request: HttpRequest, org_id: int, callback_id: int) -> HttpResponse:
    organization = tenant_selectors.organization_get(user=request.user, pk=org_id)
    subscription = callbacks.callback_subscription_get(
        user=request.user, organization=organization, pk=callback_id
    )
    if request.method == "POST":
        callbacks.callback_subscription_delete(subscription=subscription)
        messages.success(request, f"Callback {subscription.name} deleted.")
        return redirect("callbacks:list", org_id=organization.pk)
    return render(
        request,
        "tenants/confirm_delete.html",
        {
            "organization": organization,
            "title": f"Delete callback {subscription.name}?",
            "consequences": [
                f"{subscription.get_callback_type_display()} events stop being sent to "
                f"{subscription.url}.",
                "Its delivery history is deleted with it.",
            ],
            "cancel_url": reverse("callbacks:detail", args=[organization.pk, subscription.pk]),
        },
    )


@login_required
def callback_test(request: HttpRequest, org_id: int, callback_id: int) -> HttpResponse:
    organization = tenant_selectors.organization_get(user=request.user, pk=org_id)
    subscription = callbacks.callback_subscription_get(
        user=request.user, organization=organization, pk=callback_id
    )
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    try:
        callbacks.callback_subscription_test(subscription=subscription)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(
            request, "A sample event was queued; its delivery appears below in a moment."
        )
    return redirect("callbacks:detail", org_id=organization.pk, callback_id=subscription.pk)


@login_required
@require_POST
def callback_delivery_retry(
    request: HttpRequest, org_id: int, callback_id: int, delivery_id: int
) -> HttpResponse:
    """Send a failed delivery again (same webhook-id, attempts reset)."""
    organization = tenant_selectors.organization_get(user=request.user, pk=org_id)
    subscription = callbacks.callback_subscription_get(
        user=request.user, organization=organization, pk=callback_id
    )
    delivery = callbacks.callback_delivery_get(
        user=request.user, subscription=subscription, pk=delivery_id
    )
    try:
        delivery = callbacks.callback_delivery_retry(delivery=delivery)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        if delivery.state == CallbackDelivery.State.FAILED:
            messages.error(request, f"Retried; it failed again: {delivery.last_error}")
        elif delivery.state == CallbackDelivery.State.DELIVERED:
            messages.success(request, f"Delivery {delivery.webhook_id}: retried and delivered.")
        else:
            messages.success(
                request,
                f"Delivery {delivery.webhook_id} queued again (same webhook-id); its new state "
                "appears below in a moment.",
            )
    url = reverse("callbacks:detail", args=[organization.pk, subscription.pk])
    return redirect(f"{url}#deliveries")
