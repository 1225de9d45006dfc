"""Installations: enable a spec for an organization (the generated property form), the
installation page, edit, upgrade to a newer spec version, disable, and the connection test.

Every view looks the organization / installation up through the tenant-scoped selectors
first, so a foreign id is a 404 whatever the HTTP method. Secrets are never rendered back.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.forms import Form
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse

from integrations import selectors, services
from integrations.connections import installation_spec, sms_webhook_path
from integrations.engine.errors import IntegrationError, SpecError
from integrations.engine.spec import Spec
from integrations.forms import (
    ConnectionTestForm,
    InstallationSettingsForm,
    PropertyForm,
    property_choices,
)
from integrations.models import Installation
from tenants import selectors as tenant_selectors

SETTINGS_FIELDS = ("label", "create_contacts", "match_policy")


def _posted(request: HttpRequest) -> Any:
    return request.POST if request.method == "POST" else None


def _add_service_errors(
    exc: ValidationError, *, property_form: PropertyForm, settings_form: Form
) -> None:
    """Show a service's ValidationError on the fields it names (property names are mapped to
    the generated field names); anything else becomes a form-wide error."""
    by_property = {name: field for field, name in property_form.field_names.items()}
    if not hasattr(exc, "error_dict"):
        for message in exc.messages:
            property_form.add_error(None, message)
        return
    for name, errors in exc.message_dict.items():
        if name in by_property:
            for message in errors:
                property_form.add_error(by_property[name], message)
        elif name in settings_form.fields:
            for message in errors:
                settings_form.add_error(name, message)
        else:
            for message in errors:
                property_form.add_error(None, f"{name}: {message}")


def _related_url(name: str, installation: Installation, fallback: str) -> str:
    """A page of the user-mapping / delivery-log area if it is routed, else its plain path."""
    for kwargs in ({"installation_id": installation.pk}, None):
        try:
            if kwargs is None:
                return reverse(f"integrations:{name}", args=[installation.pk])
            return reverse(f"integrations:{name}", kwargs=kwargs)
        except NoReverseMatch:
            continue
    return fallback


def _saved_message(request: HttpRequest, installation: Installation, done: str) -> None:
    """`done` as a success message, or as a warning when the credentials could not be
    verified (the spec has no harmless read method)."""
    installation.refresh_from_db(fields=["status_detail"])
    if installation.status_detail == services.CREDENTIALS_NOT_VERIFIED:
        messages.warning(request, f"{done} {installation.status_detail}")
    else:
        messages.success(request, done)


def _test_methods(spec: Spec) -> list[str]:
    return [m for m in services.CONNECTION_TEST_METHODS if spec.has_method(m)]


def _property_rows(installation: Installation, spec: Spec) -> list[dict[str, Any]]:
    """Each property with its value for people: secrets only say whether one is stored."""
    stored_secrets = installation.secret_properties or {}
    rows = []
    for index, prop in enumerate(spec.properties):
        secret = services.property_is_secret(prop)
        value = None if secret else (installation.properties or {}).get(prop.name)
        if prop.type == "choice" and value is not None:
            # The choice's label when the spec gives one ("India" rather than "in").
            value = dict(property_choices(spec, index, prop)).get(str(value), value)
        rows.append(
            {
                "label": prop.label or prop.name,
                "secret": secret,
                "stored": bool(stored_secrets.get(prop.name)) if secret else value is not None,
                "value": value,
                "type": prop.type,
            }
        )
    return rows


# --- Enable / edit / upgrade ----------------------------------------------------------------


@login_required
def installation_create(request: HttpRequest, org_id: int, spec_id: int) -> HttpResponse:
    """Enable a spec of the organization's catalog: the property form generated from it."""
    organization = tenant_selectors.organization_get(user=request.user, pk=org_id)
    entry = selectors.catalog_entry_get(
        user=request.user, organization=organization, spec_pk=spec_id
    )
    property_form = PropertyForm(_posted(request), spec=entry.loaded)
    settings_form = InstallationSettingsForm(_posted(request), spec_class=entry.loaded.spec_class)
    error = ""
    if request.method == "POST" and property_form.is_valid() and settings_form.is_valid():
        plain, secret = property_form.property_values()
        try:
            installation = services.installation_create(
                user=request.user,
                organization=organization,
                spec_version=entry.version,
                properties=plain,
                secret_properties=secret,
                label=settings_form.cleaned_data.get("label", ""),
                create_contacts=settings_form.cleaned_data.get("create_contacts", False),
                match_policy=settings_form.cleaned_data.get("match_policy") or None,
            )
        except ValidationError as exc:
            _add_service_errors(exc, property_form=property_form, settings_form=settings_form)
        except (IntegrationError, SpecError) as exc:
            error = str(exc)
        else:
            if installation.status == Installation.Status.NOT_CONNECTED:
                messages.success(
                    request,
                    f"{entry.spec.name} is set up. Connect it to your account to start.",
                )
            elif installation.status_detail == services.CREDENTIALS_NOT_VERIFIED:
                messages.warning(
                    request, f"{entry.spec.name} is enabled. {installation.status_detail}"
                )
            elif entry.loaded.auth_type == "none":
                messages.success(request, f"{entry.spec.name} is enabled.")
            else:
                messages.success(request, f"{entry.spec.name} is enabled and the test call worked.")
            return redirect("integrations:installation_detail", installation_id=installation.pk)
    return render(
        request,
        "integrations/installation_form.html",
        {
            "organization": organization,
            "spec": entry.spec,
            "version": entry.version,
            "loaded": entry.loaded,
            "logo_url": entry.logo_url,
            "property_form": property_form,
            "settings_form": settings_form,
            "error": error,
            "mode": "create",
            "submit_label": f"Enable {entry.spec.name}",
            "cancel_url": reverse("integrations:catalog", args=[organization.pk]),
        },
    )


@login_required
def installation_edit(request: HttpRequest, installation_id: int) -> HttpResponse:
    installation = selectors.installation_get(user=request.user, pk=installation_id)
    spec = installation_spec(installation)
    property_form = PropertyForm(
        _posted(request),
        spec=spec,
        initial_values=installation.properties or {},
        stored_secrets={k for k, v in (installation.secret_properties or {}).items() if v},
    )
    settings_form = InstallationSettingsForm(
        _posted(request),
        spec_class=spec.spec_class,
        initial={
            "label": installation.label,
            "create_contacts": installation.create_contacts,
            "match_policy": installation.match_policy,
        },
    )
    error = ""
    if request.method == "POST" and property_form.is_valid() and settings_form.is_valid():
        plain, secret = property_form.property_values()
        try:
            services.installation_update(
                installation=installation,
                properties=plain,
                secret_properties=secret,
                label=settings_form.cleaned_data.get("label", ""),
                create_contacts=settings_form.cleaned_data.get("create_contacts"),
                match_policy=settings_form.cleaned_data.get("match_policy") or None,
            )
        except ValidationError as exc:
            _add_service_errors(exc, property_form=property_form, settings_form=settings_form)
        except (IntegrationError, SpecError) as exc:
            error = str(exc)
        else:
            _saved_message(request, installation, "Settings saved.")
            return redirect("integrations:installation_detail", installation_id=installation.pk)
    return render(
        request,
        "integrations/installation_form.html",
        {
            "organization": installation.organization,
            "installation": installation,
            "spec": installation.spec,
            "version": installation.spec_version,
            "loaded": spec,
            "logo_url": selectors.spec_logo_url(installation.spec),
            "property_form": property_form,
            "settings_form": settings_form,
            "error": error,
            "mode": "edit",
            "submit_label": "Save changes",
            "cancel_url": reverse("integrations:installation_detail", args=[installation.pk]),
        },
    )


@login_required
def installation_upgrade(request: HttpRequest, installation_id: int) -> HttpResponse:
    """Move to the latest approved version: its property form, pre-filled, re-validated."""
    installation = selectors.installation_get(user=request.user, pk=installation_id)
    target = selectors.installation_upgrade_target(installation)
    if target is None:
        messages.info(request, "This installation already uses the latest approved version.")
        return redirect("integrations:installation_detail", installation_id=installation.pk)
    spec = selectors.spec_version_load(target)
    names = {prop.name for prop in spec.properties}
    property_form = PropertyForm(
        _posted(request),
        spec=spec,
        initial_values={k: v for k, v in (installation.properties or {}).items() if k in names},
        stored_secrets={
            k for k, v in (installation.secret_properties or {}).items() if v and k in names
        },
    )
    settings_form = InstallationSettingsForm(None, spec_class="none")
    error = ""
    if request.method == "POST" and property_form.is_valid():
        plain, secret = property_form.property_values()
        try:
            services.installation_upgrade(
                installation=installation,
                spec_version=target,
                properties=plain,
                secret_properties=secret,
            )
        except ValidationError as exc:
            _add_service_errors(exc, property_form=property_form, settings_form=settings_form)
        except (IntegrationError, SpecError) as exc:
            error = str(exc)
        else:
            _saved_message(request, installation, f"Upgraded to version {target.number}.")
            return redirect("integrations:installation_detail", installation_id=installation.pk)
    return render(
        request,
        "integrations/installation_form.html",
        {
            "organization": installation.organization,
            "installation": installation,
            "spec": installation.spec,
            "version": target,
            "loaded": spec,
            "logo_url": selectors.spec_logo_url(installation.spec),
            "property_form": property_form,
            "settings_form": None,
            "error": error,
            "mode": "upgrade",
            "submit_label": f"Upgrade to version {target.number}",
            "cancel_url": reverse("integrations:installation_detail", args=[installation.pk]),
        },
    )


# --- The installation page ------------------------------------------------------------------


@login_required
def installation_detail(request: HttpRequest, installation_id: int) -> HttpResponse:
    installation = selectors.installation_get(user=request.user, pk=installation_id)
    spec = installation_spec(installation)
    methods = _test_methods(spec)
    return render(
        request,
        "integrations/installation_detail.html",
        {
            "organization": installation.organization,
            "installation": installation,
            "spec": installation.spec,
            "loaded": spec,
            "logo_url": selectors.spec_logo_url(installation.spec),
            "is_oauth2": spec.auth_type == "oauth2",
            "is_connected": bool((installation.tokens or {}).get("access_token")),
            "property_rows": _property_rows(installation, spec),
            "upgrade_to": selectors.installation_upgrade_target(installation),
            "test_form": ConnectionTestForm(methods=methods) if methods else None,
            "user_mapping_url": _related_url(
                "user_mapping",
                installation,
                f"/integrations/installations/{installation.pk}/users/",
            ),
            "delivery_log_url": _related_url(
                "delivery_log",
                installation,
                f"/integrations/installations/{installation.pk}/log/",
            ),
            "sms_webhook_url": (
                settings.PUBLIC_BASE_URL + sms_webhook_path(installation)
                if spec.spec_class == "sms"
                else ""
            ),
            "captured": sorted((installation.captured or {}).keys()),
        },
    )


@login_required
def installation_delete(request: HttpRequest, installation_id: int) -> HttpResponse:
    """Disable: runs Uninstall; its failure is shown with a "disable anyway" choice."""
    installation = selectors.installation_get(user=request.user, pk=installation_id)
    error = ""
    if request.method == "POST":
        force = request.POST.get("force") == "1"
        organization = installation.organization
        name = str(installation)
        try:
            services.installation_delete(installation=installation, force=force)
        except (IntegrationError, SpecError) as exc:
            error = str(exc)
        else:
            messages.success(request, f"{name} was disabled.")
            return redirect("integrations:organization_integrations", org_id=organization.pk)
    spec = installation_spec(installation)
    return render(
        request,
        "integrations/installation_confirm_delete.html",
        {
            "organization": installation.organization,
            "installation": installation,
            "has_uninstall": bool(spec.uninstall),
            "error": error,
        },
    )


@login_required
def installation_test(request: HttpRequest, installation_id: int) -> HttpResponse:
    """Run a harmless method and show the mapped result or the error, with the request sent
    (redacted: no secret property value is ever in this page)."""
    installation = selectors.installation_get(user=request.user, pk=installation_id)
    spec = installation_spec(installation)
    methods = _test_methods(spec)
    if not methods:
        raise PermissionDenied(f"{spec.name} has no method that can be used to test it.")
    form = ConnectionTestForm(_posted(request), methods=methods)
    outcome = None
    if request.method == "POST" and form.is_valid():
        try:
            outcome = services.installation_test(
                installation=installation,
                method_name=form.cleaned_data["method_name"],
                phone=form.cleaned_data.get("phone") or None,
            )
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                for message in errors:
                    form.add_error(field if field in form.fields else None, message)
    return render(
        request,
        "integrations/installation_test.html",
        {
            "organization": installation.organization,
            "installation": installation,
            "spec": installation.spec,
            "form": form,
            "outcome": outcome,
            "requests_shown": [_request_display(r) for r in outcome.requests] if outcome else [],
        },
    )


def _request_display(summary: dict[str, Any]) -> dict[str, Any]:
    """A redacted request summary as text: query lines, headers, body (JSON when it is)."""
    query = "\n".join(f"?{name}={value}" for name, value in summary.get("query") or [])
    headers = "\n".join(f"{k}: {v}" for k, v in (summary.get("headers") or {}).items())
    body = summary.get("body")
    if body is None or body == "":
        body_text = ""
    elif isinstance(body, str):
        body_text = body
    else:
        body_text = json.dumps(body, indent=2, ensure_ascii=False, default=str)
    return {
        "method": summary.get("method", ""),
        "url": summary.get("url", ""),
        "query_text": query,
        "headers_text": headers,
        "body_text": body_text,
    }
