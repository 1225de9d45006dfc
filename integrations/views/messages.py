"""Conversations of an organization's SMS numbers: threads by external number, the messages
of one thread with their status (a "Send again" button on a failed one, "Log to CRM again"
on one whose CRM log failed), and a form to send a text (or a file URL, as an MMS).

Every view looks the organization and number up through the tenant selectors first, so
another tenant's ids are a 404."""

from __future__ import annotations

from django import forms
from django.contrib import messages as flash
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_POST

from integrations.messaging import (
    conversation_list,
    message_crm_log_installations,
    message_crm_log_missing,
    message_list,
    message_resend,
    message_resend_action,
    message_send,
)
from integrations.models import Message
from tenants import selectors as tenant_selectors
from tenants.phones import phone_display


class MessageSendForm(forms.Form):
    to = forms.CharField(max_length=40, label="To", help_text="E.164 or a national number.")
    content = forms.CharField(
        required=False, max_length=10000, widget=forms.Textarea(attrs={"rows": 3}), label="Message"
    )
    media_url = forms.URLField(
        required=False,
        assume_scheme="https",
        label="File URL (MMS)",
        help_text="Optional: a file to send as an MMS.",
    )
    sender = forms.TypedChoiceField(required=False, coerce=int, empty_value=None, label="From user")


@login_required
def conversations(request: HttpRequest, org_id: int) -> HttpResponse:
    """The organization's SMS numbers, each linking to its conversations."""
    organization = tenant_selectors.organization_get(user=request.user, pk=org_id)
    numbers = list(tenant_selectors.sms_number_list(user=request.user, organization=organization))
    rows = [
        {
            "number": n,
            "display": phone_display(n.number),
            "threads": len(conversation_list(user=request.user, sms_number=n)),
        }
        for n in numbers
    ]
    return render(
        request,
        "integrations/conversations.html",
        {"organization": organization, "rows": rows},
    )


@login_required
def conversation_detail(request: HttpRequest, org_id: int, sms_number_id: int) -> HttpResponse:
    """Threads of one number; `?with=<number>` opens one thread. POST sends a message."""
    organization = tenant_selectors.organization_get(user=request.user, pk=org_id)
    sms_number = tenant_selectors.sms_number_get(
        user=request.user, organization=organization, pk=sms_number_id
    )
    users = list(sms_number.users.order_by("extension"))
    selected = request.GET.get("with") or ""
    form = MessageSendForm(request.POST or None, initial={"to": selected})
    form.fields["sender"].choices = [("", "—")] + [(u.pk, f"{u.extension} {u.name}") for u in users]
    if request.method == "POST" and form.is_valid():
        sender = None
        if form.cleaned_data.get("sender"):
            sender = tenant_selectors.pbx_user_get(
                user=request.user, organization=organization, pk=form.cleaned_data["sender"]
            )
        try:
            message = message_send(
                organization=organization,
                sms_number=sms_number,
                sender=sender,
                to=form.cleaned_data["to"],
                content=form.cleaned_data.get("content") or "",
                media_url=form.cleaned_data.get("media_url") or None,
            )
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                target = field if field in form.fields else None
                for error in errors:
                    form.add_error(target, error)
        else:
            message.refresh_from_db()
            if message.status == "failed":
                flash.error(request, f"Not sent: {message.error}")
            else:
                flash.success(request, f"Message to {message.to_number} {message.status}.")
            url = reverse("messaging:conversation_detail", args=[organization.pk, sms_number.pk])
            return redirect(f"{url}?with={message.to_number}")
    threads = conversation_list(user=request.user, sms_number=sms_number)
    thread_messages = []
    if selected:
        thread_messages = list(
            message_list(
                user=request.user,
                organization=organization,
                sms_number=sms_number,
                conversation=selected,
            )[:200]
        )
        thread_messages.reverse()
        crm_installations = message_crm_log_installations(organization_id=organization.pk)
        for message in thread_messages:
            message.resend_action = message_resend_action(
                message=message, crm_installations=crm_installations
            )
    return render(
        request,
        "integrations/conversation_detail.html",
        {
            "organization": organization,
            "sms_number": sms_number,
            "display": phone_display(sms_number.number),
            "users": users,
            "threads": threads,
            "selected": selected,
            "thread_messages": thread_messages,
            "form": form,
        },
    )


def _external_number(message: Message) -> str:
    if message.direction == Message.Direction.INBOUND:
        return message.from_number
    return message.to_number


@login_required
@require_POST
def message_resend_view(
    request: HttpRequest, org_id: int, sms_number_id: int, message_id: int
) -> HttpResponse:
    """Send a failed message again, or log a message whose CRM log failed again."""
    organization = tenant_selectors.organization_get(user=request.user, pk=org_id)
    sms_number = tenant_selectors.sms_number_get(
        user=request.user, organization=organization, pk=sms_number_id
    )
    message = get_object_or_404(
        message_list(user=request.user, organization=organization, sms_number=sms_number),
        pk=message_id,
    )
    crm_log = message.status != Message.Status.FAILED
    try:
        message = message_resend(message=message)
    except ValidationError as exc:
        flash.error(request, " ".join(exc.messages))
    else:
        message.refresh_from_db()
        if crm_log:
            if message.crm_log_due_at is not None:
                flash.success(request, "Logging to the CRM again; it appears there in a moment.")
            elif message_crm_log_missing(message=message):
                flash.error(
                    request,
                    "The CRM log failed again: see the CRM integration's delivery log for the "
                    "reason, fix it, then try again.",
                )
            else:
                flash.success(request, "Logged to the CRM again.")
        elif message.status == Message.Status.FAILED:
            flash.error(request, f"Sent again; it failed again: {message.error}")
        elif message.status == Message.Status.QUEUED:
            flash.success(
                request,
                f"Message to {message.to_number} queued to be sent again; its status appears "
                "here in a moment.",
            )
        else:
            flash.success(
                request, f"Message to {message.to_number}: sent again ({message.status})."
            )
    url = reverse("messaging:conversation_detail", args=[organization.pk, sms_number.pk])
    return redirect(f"{url}?{urlencode({'with': _external_number(message)})}")
