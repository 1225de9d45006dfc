"""The catalog: what an organization can enable, each spec's page (readiness report, methods,
properties, versions), custom spec upload for reseller admins and the staff review page.

Views are thin: reads through `integrations.selectors` (a foreign id is a 404 before anything
else happens) and writes through `integrations.services`.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.urls import reverse

from integrations import selectors, services
from integrations.engine.errors import SpecError
from integrations.engine.spec import Spec
from integrations.forms import SpecReviewForm, SpecUploadForm
from integrations.models import SpecVersion
from tenants import selectors as tenant_selectors


def _methods_of(spec: Spec) -> list[dict[str, Any]]:
    """Each API method with its HTTP method and path (first step of a stepped method)."""
    rows = []
    for name, method in spec.methods.items():
        steps = method if isinstance(method, list) else [method]
        first = steps[0] if steps else {}
        rows.append(
            {
                "name": name,
                "http_method": first.get("request_method", "GET"),
                "path": first.get("request_path") or first.get("request_url") or "",
                "steps": len(steps) if isinstance(method, list) else 0,
                "description": first.get("description", "")
                if isinstance(first.get("description"), str)
                else "",
            }
        )
    return rows


def _lifecycle_of(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "http_method": r.get("request_method", "GET"),
            "path": r.get("request_path") or r.get("request_url") or "",
            "description": r.get("description", ""),
        }
        for r in requests
    ]


@login_required
def organization_integrations(request: HttpRequest, org_id: int) -> HttpResponse:
    """The organization's "Integrations" tab: its installations."""
    organization = tenant_selectors.organization_get(user=request.user, pk=org_id)
    installations = list(selectors.installation_list(user=request.user, organization=organization))
    for installation in installations:
        installation.upgrade_to = selectors.installation_upgrade_target(installation)
    return render(
        request,
        "integrations/organization_integrations.html",
        {
            "organization": organization,
            "installations": installations,
            "can_manage": tenant_selectors.organization_can_manage(
                user=request.user, organization=organization
            ),
        },
    )


@login_required
def catalog(request: HttpRequest, org_id: int) -> HttpResponse:
    organization = tenant_selectors.organization_get(user=request.user, pk=org_id)
    entries = selectors.catalog_for_organization(user=request.user, organization=organization)
    return render(
        request,
        "integrations/catalog.html",
        {
            "organization": organization,
            "crm_entries": [e for e in entries if e.spec.spec_class == "crm"],
            "sms_entries": [e for e in entries if e.spec.spec_class == "sms"],
            "can_upload": tenant_selectors.accounts_managed_by(user=request.user)
            .filter(pk=organization.account_id)
            .exists(),
        },
    )


@login_required
def spec_list(request: HttpRequest) -> HttpResponse:
    specs = list(selectors.spec_list(user=request.user))
    return render(
        request,
        "integrations/spec_list.html",
        {
            "builtin_specs": [s for s in specs if s.is_builtin],
            "custom_specs": [s for s in specs if not s.is_builtin],
            "can_upload": tenant_selectors.user_is_reseller_admin(user=request.user),
        },
    )


@login_required
def spec_detail(request: HttpRequest, spec_id: int) -> HttpResponse:
    """A spec's page: readiness checklist, methods, properties and versions.

    `?version=N` shows another version; `?org=<id>` (an organization the user may see, or
    404) adds an Enable button when that organization may enable the spec.
    """
    spec = selectors.spec_get(user=request.user, pk=spec_id)
    organization = None
    if request.GET.get("org"):
        try:
            org_pk = int(request.GET["org"])
        except ValueError:
            org_pk = 0
        organization = tenant_selectors.organization_get(user=request.user, pk=org_pk)
    versions = list(selectors.spec_versions_visible(user=request.user, spec=spec))
    shown: SpecVersion | None = None
    if request.GET.get("version"):
        shown = next((v for v in versions if str(v.number) == request.GET["version"]), None)
    if shown is None:
        shown = spec.latest_approved() or (versions[0] if versions else None)
    loaded = None
    load_problems: list[str] = []
    if shown is not None:
        try:
            loaded = selectors.spec_version_load(shown)
        except SpecError as exc:
            load_problems = [str(p) for p in exc.problems]
    can_enable = (
        organization is not None
        and spec.latest_approved() is not None
        and selectors.spec_available_to_organization(spec=spec, organization=organization)
    )
    return render(
        request,
        "integrations/spec_detail.html",
        {
            "spec": spec,
            "organization": organization if can_enable else None,
            "versions": versions,
            "shown": shown,
            "loaded": loaded,
            "load_problems": load_problems,
            "readiness": selectors.spec_readiness(loaded) if loaded else None,
            "methods": _methods_of(loaded) if loaded else [],
            "install_steps": _lifecycle_of(loaded.install) if loaded else [],
            "uninstall_steps": _lifecycle_of(loaded.uninstall) if loaded else [],
            "logo_url": selectors.spec_logo_url(spec),
            "document": services.spec_document_text(shown) if shown else "",
        },
    )


@login_required
def spec_upload(request: HttpRequest) -> HttpResponse:
    """Upload a custom spec (reseller admins): validated at once, every problem shown with
    its JSON pointer; a valid one waits for staff approval."""
    accounts = tenant_selectors.accounts_managed_by(user=request.user)
    if not accounts.exists():
        raise PermissionDenied("Only a reseller admin can upload custom specs.")
    form = SpecUploadForm(
        request.POST if request.method == "POST" else None,
        request.FILES if request.method == "POST" else None,
        accounts=accounts,
    )
    problems: list[dict[str, str]] = []
    if request.method == "POST" and form.is_valid():
        try:
            version = services.spec_upload(
                user=request.user,
                account=form.cleaned_data["account"],
                source=form.cleaned_data["source"],
            )
        except SpecError as exc:
            problems = [{"pointer": p.pointer or "/", "message": p.message} for p in exc.problems]
        else:
            messages.success(
                request,
                f"{version.spec.name} v{version.number} was uploaded and waits for review by "
                "the platform staff. It appears in the catalog once approved.",
            )
            return redirect("integrations:spec_detail", spec_id=version.spec_id)
    return render(
        request,
        "integrations/spec_upload.html",
        {"form": form, "problems": problems},
    )


@login_required
def spec_review_list(request: HttpRequest) -> HttpResponse:
    """Staff: the submitted custom spec versions, oldest first."""
    versions = selectors.spec_versions_for_review(user=request.user)
    return render(
        request,
        "integrations/spec_review.html",
        {"versions": versions, "form": SpecReviewForm()},
    )


@login_required
def spec_review(request: HttpRequest, version_id: int) -> HttpResponse:
    """Staff: approve or reject one version (POST)."""
    version = selectors.spec_version_get_for_review(user=request.user, pk=version_id)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    form = SpecReviewForm(request.POST)
    if form.is_valid():
        approve = form.cleaned_data["decision"] == "approve"
        try:
            services.spec_version_review(
                reviewer=request.user,
                version=version,
                approve=approve,
                note=form.cleaned_data["note"],
            )
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(request, f"{version} {'approved' if approve else 'rejected'}.")
    else:
        messages.error(request, "Choose approve or reject.")
    return redirect(reverse("integrations:spec_review_list"))
