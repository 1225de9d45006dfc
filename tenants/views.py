"""Web UI of the tenant data: dashboard, organizations, PBX users, SMS numbers.

Views stay thin: they read through `tenants.selectors` (a row of another tenant is a 404,
looked up before anything else, so even the wrong HTTP method on a foreign row is a 404)
and write through `tenants.services`. Deletes and other changes happen on POST only.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.urls import reverse

from tenants import selectors, services
from tenants.forms import (
    OrganizationForm,
    PbxUserForm,
    PbxUsersCsvConfirmForm,
    PbxUsersCsvUploadForm,
    SmsNumberAssignForm,
    SmsNumberForm,
    add_service_errors,
)
from tenants.models import Organization, PbxUser, SmsNumber
from tenants.phones import phone_display

ORGANIZATIONS_PER_PAGE = 20
PBX_USERS_PER_PAGE = 50
ORGANIZATION_TABS = ("users", "numbers", "webhooks")
SAMPLE_CSV = (
    "extension,name,email,mobile\n"
    "101,Alice Moreno,alice@example.com,(415) 555-0101\n"
    "102,Bob Chen,bob@example.com,\n"
)


def _post_only(request: HttpRequest) -> HttpResponse | None:
    """405 unless POST. Called after the tenant lookup, so a foreign row stays a 404."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    return None


def _posted(request: HttpRequest) -> Any:
    """The POST data to bind a form to, or None on GET. (Not `request.POST or None`: a POST
    that unticks every checkbox is empty, and must still be processed.)"""
    return request.POST if request.method == "POST" else None


def _paginate(request: HttpRequest, queryset: QuerySet[Any], per_page: int) -> Page:
    return Paginator(queryset, per_page).get_page(request.GET.get("page"))


def _organization_url(organization: Organization, tab: str = "users") -> str:
    return f"{reverse('organization_detail', args=[organization.pk])}?tab={tab}"


# Session key of a webhook secret to show once, on the organization's next page.
NEW_WEBHOOK_SECRET_SESSION_KEY = "tenants:new_webhook_secret"


def _show_webhook_secret_once(
    request: HttpRequest, organization: Organization, secret: str
) -> None:
    """Keep `secret` (server-side, in the session) for the next page of `organization`, which
    shows it once and forgets it."""
    request.session[NEW_WEBHOOK_SECRET_SESSION_KEY] = {"org": organization.pk, "secret": secret}


def _pop_webhook_secret(request: HttpRequest, organization: Organization) -> str:
    pending = request.session.get(NEW_WEBHOOK_SECRET_SESSION_KEY)
    if not pending or pending.get("org") != organization.pk:
        return ""
    del request.session[NEW_WEBHOOK_SECRET_SESSION_KEY]
    return pending.get("secret", "")


def _require_reseller_of(request: HttpRequest, organization: Organization) -> None:
    if not selectors.organization_can_manage(user=request.user, organization=organization):
        raise PermissionDenied("Only a reseller admin of this organization's account may.")


# --- Dashboard ------------------------------------------------------------------------------


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    recent = selectors.organization_list(user=request.user).order_by("-created_at", "-pk")[:5]
    return render(
        request,
        "tenants/dashboard.html",
        {"counts": selectors.tenant_counts(user=request.user), "recent_organizations": recent},
    )


# --- Organizations --------------------------------------------------------------------------


@login_required
def organization_list(request: HttpRequest) -> HttpResponse:
    search = request.GET.get("q", "").strip()
    organizations = selectors.organization_list(user=request.user, search=search)
    page = _paginate(request, organizations, ORGANIZATIONS_PER_PAGE)
    accounts = selectors.accounts_managed_by(user=request.user)
    return render(
        request,
        "tenants/organization_list.html",
        {
            "page": page,
            "search": search,
            "show_account": accounts.count() > 1,
        },
    )


@login_required
def organization_create(request: HttpRequest) -> HttpResponse:
    accounts = selectors.accounts_managed_by(user=request.user)
    if not accounts.exists():
        raise PermissionDenied("Only a reseller admin can create organizations.")
    form = OrganizationForm(_posted(request), accounts=accounts)
    if request.method == "POST" and form.is_valid():
        account = form.cleaned_data.get("account") or accounts.first()
        try:
            organization = services.organization_create(
                user=request.user,
                account=account,
                name=form.cleaned_data["name"],
                pbx_domain=form.cleaned_data["pbx_domain"],
                default_region=form.cleaned_data["default_region"],
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Organization {organization.name} created.")
            _show_webhook_secret_once(request, organization, organization.webhook_secret)
            return redirect(_organization_url(organization, "webhooks"))
    return render(
        request,
        "tenants/organization_form.html",
        {"form": form, "organization": None, "cancel_url": reverse("organization_list")},
    )


@login_required
def organization_detail(request: HttpRequest, org_id: int) -> HttpResponse:
    organization = selectors.organization_get(user=request.user, pk=org_id)
    tab = request.GET.get("tab", "users")
    if tab not in ORGANIZATION_TABS:
        tab = "users"
    search = request.GET.get("q", "").strip()
    pbx_users = selectors.pbx_user_list(
        user=request.user, organization=organization, search=search
    ).prefetch_related("sms_numbers")
    sms_numbers = list(selectors.sms_number_list(user=request.user, organization=organization))
    for sms_number in sms_numbers:
        sms_number.display = phone_display(sms_number.number)
    new_webhook_secret = _pop_webhook_secret(request, organization)
    response = render(
        request,
        "tenants/organization_detail.html",
        {
            "organization": organization,
            "tab": tab,
            "search": search,
            "pbx_user_page": _paginate(request, pbx_users, PBX_USERS_PER_PAGE),
            "pbx_user_total": selectors.pbx_user_list(
                user=request.user, organization=organization
            ).count(),
            "sms_numbers": sms_numbers,
            "can_manage": selectors.organization_can_manage(
                user=request.user, organization=organization
            ),
            "pbx_webhook_url": (
                f"{settings.PUBLIC_BASE_URL}/api/v1/hooks/pbx/{organization.webhook_key}/<event>"
            ),
            "new_webhook_secret": new_webhook_secret,
        },
    )
    if new_webhook_secret:
        # Not in the browser's cache either: "back" must not show it again.
        response["Cache-Control"] = "no-store"
    return response


@login_required
def organization_edit(request: HttpRequest, org_id: int) -> HttpResponse:
    organization = selectors.organization_get(user=request.user, pk=org_id)
    initial = {
        "name": organization.name,
        "pbx_domain": organization.pbx_domain,
        "default_region": organization.default_region,
    }
    form = OrganizationForm(_posted(request), initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services.organization_update(organization=organization, **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Organization {organization.name} saved.")
            return redirect("organization_detail", org_id=organization.pk)
    return render(
        request,
        "tenants/organization_form.html",
        {
            "form": form,
            "organization": organization,
            "cancel_url": reverse("organization_detail", args=[organization.pk]),
        },
    )


@login_required
def organization_delete(request: HttpRequest, org_id: int) -> HttpResponse:
    organization = selectors.organization_get(user=request.user, pk=org_id)
    _require_reseller_of(request, organization)
    if request.method == "POST":
        services.organization_delete(user=request.user, organization=organization)
        messages.success(request, f"Organization {organization.name} deleted.")
        return redirect("organization_list")
    installations = list(
        organization.installations.select_related("spec_version__spec").order_by("pk")
    )
    consequences = [
        f"{organization.pbx_users.count()} PBX users and "
        f"{organization.sms_numbers.count()} SMS numbers are deleted with it.",
        "PBX webhooks sent to its webhook URL will be refused.",
    ]
    if installations:
        names = ", ".join(
            installation.label or installation.spec_version.spec.name
            for installation in installations
        )
        consequences.append(
            f"Its {len(installations)} integration(s) are uninstalled first: {names}. Each "
            "provider is told (the CRM stops sending calls here), OAuth tokens are revoked "
            "where possible and the stored tokens are deleted."
        )
    return render(
        request,
        "tenants/confirm_delete.html",
        {
            "organization": organization,
            "title": f"Delete organization {organization.name}?",
            "consequences": consequences,
            "cancel_url": reverse("organization_detail", args=[organization.pk]),
        },
    )


@login_required
def organization_rotate_webhook_secret(request: HttpRequest, org_id: int) -> HttpResponse:
    organization = selectors.organization_get(user=request.user, pk=org_id)
    if not_allowed := _post_only(request):
        return not_allowed
    secret = services.organization_rotate_webhook_secret(organization=organization)
    # Shown once, on the next page: the secret is stored encrypted and never displayed again.
    messages.success(request, "Webhook secret rotated: the previous secret no longer works.")
    _show_webhook_secret_once(request, organization, secret)
    return redirect(_organization_url(organization, "webhooks"))


# --- PBX users ------------------------------------------------------------------------------


@login_required
def pbx_user_create(request: HttpRequest, org_id: int) -> HttpResponse:
    organization = selectors.organization_get(user=request.user, pk=org_id)
    form = PbxUserForm(_posted(request))
    if request.method == "POST" and form.is_valid():
        try:
            pbx_user = services.pbx_user_create(organization=organization, **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"PBX user {pbx_user} added.")
            return redirect(_organization_url(organization, "users"))
    return render(
        request,
        "tenants/pbx_user_form.html",
        {
            "form": form,
            "organization": organization,
            "pbx_user": None,
            "cancel_url": _organization_url(organization, "users"),
        },
    )


@login_required
def pbx_user_edit(request: HttpRequest, org_id: int, user_id: int) -> HttpResponse:
    organization = selectors.organization_get(user=request.user, pk=org_id)
    pbx_user = selectors.pbx_user_get(user=request.user, organization=organization, pk=user_id)
    initial = {
        "extension": pbx_user.extension,
        "name": pbx_user.name,
        "email": pbx_user.email,
        "mobile": pbx_user.mobile,
    }
    form = PbxUserForm(_posted(request), initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services.pbx_user_update(pbx_user=pbx_user, **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"PBX user {pbx_user} saved.")
            return redirect(_organization_url(organization, "users"))
    return render(
        request,
        "tenants/pbx_user_form.html",
        {
            "form": form,
            "organization": organization,
            "pbx_user": pbx_user,
            "cancel_url": _organization_url(organization, "users"),
        },
    )


@login_required
def pbx_user_delete(request: HttpRequest, org_id: int, user_id: int) -> HttpResponse:
    organization = selectors.organization_get(user=request.user, pk=org_id)
    pbx_user = selectors.pbx_user_get(user=request.user, organization=organization, pk=user_id)
    if request.method == "POST":
        label = str(pbx_user)
        services.pbx_user_delete(pbx_user=pbx_user)
        messages.success(request, f"PBX user {label} deleted.")
        return redirect(_organization_url(organization, "users"))
    assigned = pbx_user.sms_numbers.count()
    return render(
        request,
        "tenants/confirm_delete.html",
        {
            "organization": organization,
            "title": f"Delete PBX user {pbx_user}?",
            "consequences": [
                f"The user is unassigned from {assigned} SMS number(s)."
                if assigned
                else "The user has no SMS numbers assigned."
            ],
            "cancel_url": _organization_url(organization, "users"),
        },
    )


@login_required
def pbx_users_import(request: HttpRequest, org_id: int) -> HttpResponse:
    """Import PBX users from CSV, following `services.pbx_users_import_csv`'s policy: all rows
    valid → imported at once; some bad → nothing imported, every bad row reported, and the
    admin may confirm importing the valid rows (the CSV text is re-posted in a hidden field)."""
    organization = selectors.organization_get(user=request.user, pk=org_id)
    upload_form = PbxUsersCsvUploadForm()
    confirm_form = None
    result = None
    if request.method == "POST":
        if "csv_text" in request.POST:
            confirm = PbxUsersCsvConfirmForm(request.POST)
            if confirm.is_valid():
                text, import_valid_rows = confirm.cleaned_data["csv_text"], True
            else:
                messages.error(request, "The confirmation was incomplete; upload the file again.")
                return redirect("pbx_users_import", org_id=organization.pk)
        else:
            upload_form = PbxUsersCsvUploadForm(request.POST, request.FILES)
            text, import_valid_rows = (
                (upload_form.cleaned_data["file"], False) if upload_form.is_valid() else ("", False)
            )
        if text:
            result = services.pbx_users_import_csv(
                organization=organization, text=text, import_valid_rows=import_valid_rows
            )
            if result.imported:
                skipped = f", {len(result.errors)} bad row(s) skipped" if result.errors else ""
                messages.success(
                    request,
                    f"Imported PBX users: {result.created} created, "
                    f"{result.updated} updated{skipped}.",
                )
                return redirect(_organization_url(organization, "users"))
            if result.valid_rows:
                confirm_form = PbxUsersCsvConfirmForm(
                    initial={"csv_text": text, "import_valid_rows": True}
                )
    return render(
        request,
        "tenants/pbx_users_import.html",
        {
            "organization": organization,
            "form": upload_form,
            "result": result,
            "confirm_form": confirm_form,
            "cancel_url": _organization_url(organization, "users"),
        },
    )


@login_required
def pbx_users_sample_csv(request: HttpRequest, org_id: int) -> HttpResponse:
    organization = selectors.organization_get(user=request.user, pk=org_id)
    response = HttpResponse(SAMPLE_CSV, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = (
        f'attachment; filename="{organization.slug}-pbx-users-sample.csv"'
    )
    return response


# --- SMS numbers ----------------------------------------------------------------------------


def _org_pbx_users(request: HttpRequest, organization: Organization) -> QuerySet[PbxUser]:
    return selectors.pbx_user_list(user=request.user, organization=organization)


@login_required
def sms_number_create(request: HttpRequest, org_id: int) -> HttpResponse:
    organization = selectors.organization_get(user=request.user, pk=org_id)
    form = SmsNumberForm(_posted(request), users=_org_pbx_users(request, organization))
    if request.method == "POST" and form.is_valid():
        try:
            sms_number = services.sms_number_create(
                organization=organization,
                number=form.cleaned_data["number"],
                label=form.cleaned_data["label"],
                users=list(form.cleaned_data["users"]),
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"SMS number {sms_number.number} added.")
            return redirect(_organization_url(organization, "numbers"))
    return render(
        request,
        "tenants/sms_number_form.html",
        {
            "form": form,
            "organization": organization,
            "sms_number": None,
            "cancel_url": _organization_url(organization, "numbers"),
        },
    )


def _sms_number(
    request: HttpRequest, org_id: int, number_id: int
) -> tuple[Organization, SmsNumber]:
    organization = selectors.organization_get(user=request.user, pk=org_id)
    sms_number = selectors.sms_number_get(
        user=request.user, organization=organization, pk=number_id
    )
    return organization, sms_number


@login_required
def sms_number_edit(request: HttpRequest, org_id: int, number_id: int) -> HttpResponse:
    organization, sms_number = _sms_number(request, org_id, number_id)
    form = SmsNumberForm(
        _posted(request), initial={"number": sms_number.number, "label": sms_number.label}
    )
    if request.method == "POST" and form.is_valid():
        try:
            services.sms_number_update(sms_number=sms_number, **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"SMS number {sms_number.number} saved.")
            return redirect(_organization_url(organization, "numbers"))
    return render(
        request,
        "tenants/sms_number_form.html",
        {
            "form": form,
            "organization": organization,
            "sms_number": sms_number,
            "cancel_url": _organization_url(organization, "numbers"),
        },
    )


@login_required
def sms_number_assign(request: HttpRequest, org_id: int, number_id: int) -> HttpResponse:
    organization, sms_number = _sms_number(request, org_id, number_id)
    form = SmsNumberAssignForm(
        _posted(request),
        users=_org_pbx_users(request, organization),
        initial={"users": list(sms_number.users.all())},
    )
    if request.method == "POST" and form.is_valid():
        try:
            services.sms_number_assign(
                sms_number=sms_number, users=list(form.cleaned_data["users"])
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            count = len(form.cleaned_data["users"])
            messages.success(
                request, f"SMS number {sms_number.number} assigned to {count} user(s)."
            )
            return redirect(_organization_url(organization, "numbers"))
    return render(
        request,
        "tenants/sms_number_assign.html",
        {
            "form": form,
            "organization": organization,
            "sms_number": sms_number,
            "cancel_url": _organization_url(organization, "numbers"),
        },
    )


@login_required
def sms_number_delete(request: HttpRequest, org_id: int, number_id: int) -> HttpResponse:
    organization, sms_number = _sms_number(request, org_id, number_id)
    if request.method == "POST":
        number = sms_number.number
        services.sms_number_delete(sms_number=sms_number)
        messages.success(request, f"SMS number {number} deleted.")
        return redirect(_organization_url(organization, "numbers"))
    return render(
        request,
        "tenants/confirm_delete.html",
        {
            "organization": organization,
            "title": f"Delete SMS number {sms_number.number}?",
            "consequences": [
                "Messages sent to this number will no longer reach the organization's users."
            ],
            "cancel_url": _organization_url(organization, "numbers"),
        },
    )
