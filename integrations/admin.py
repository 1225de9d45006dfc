"""Django admin for platform staff: the spec catalog (approve/reject custom spec versions),
installations (secrets, tokens and captured values are never shown), OAuth states, CRM users,
user mappings and the delivery log (read-only)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from integrations import services
from integrations.models import (
    CrmUser,
    DeliveryLogEntry,
    Installation,
    IntegrationSpec,
    OAuthState,
    SpecVersion,
    UserFetch,
    UserMapping,
)


class SpecVersionInline(admin.TabularInline):
    model = SpecVersion
    fields = ("number", "status", "uploaded_by", "reviewed_by", "reviewed_at", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(IntegrationSpec)
class IntegrationSpecAdmin(admin.ModelAdmin):
    list_display = ("name", "spec_id", "spec_class", "account", "created_at")
    list_filter = ("spec_class", ("account", admin.EmptyFieldListFilter))
    search_fields = ("name", "spec_id", "account__name")
    readonly_fields = ("created_at",)
    inlines = [SpecVersionInline]


def _review(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet, *, approve: bool
) -> None:
    count = 0
    for version in queryset.select_related("spec"):
        services.spec_version_review(reviewer=request.user, version=version, approve=approve)
        count += 1
    verb = "approved" if approve else "rejected"
    modeladmin.message_user(request, f"{count} spec version(s) {verb}.", messages.SUCCESS)


@admin.action(description="Approve the selected versions (they appear in the catalog)")
def approve_versions(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet
) -> None:
    _review(modeladmin, request, queryset, approve=True)


@admin.action(description="Reject the selected versions")
def reject_versions(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    _review(modeladmin, request, queryset, approve=False)


@admin.register(SpecVersion)
class SpecVersionAdmin(admin.ModelAdmin):
    list_display = ("spec", "number", "status", "account", "uploaded_by", "created_at")
    list_filter = ("status", "spec__spec_class")
    search_fields = ("spec__name", "spec__spec_id", "spec__account__name")
    readonly_fields = (
        "spec",
        "number",
        "document",
        "sha256",
        "status",
        "uploaded_by",
        "reviewed_by",
        "reviewed_at",
        "created_at",
    )
    fields = (*readonly_fields, "review_note")
    actions = [approve_versions, reject_versions]

    @admin.display(description="account")
    def account(self, obj: SpecVersion) -> str:
        return str(obj.spec.account) if obj.spec.account_id else "built-in"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Installation)
class InstallationAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "organization",
        "spec_version",
        "status",
        "connected_as",
        "created_at",
    )
    list_filter = ("status", "spec_version__spec")
    search_fields = ("organization__name", "label", "key", "spec_version__spec__name")
    # Secret property values, tokens and captured values are encrypted and never shown.
    exclude = ("secret_properties", "tokens", "captured")
    readonly_fields = ("organization", "spec_version", "key", "created_at", "updated_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(OAuthState)
class OAuthStateAdmin(admin.ModelAdmin):
    list_display = ("installation", "user", "expires_at", "used_at", "created_at")
    exclude = ("state",)
    readonly_fields = ("installation", "user", "redirect_uri", "expires_at", "used_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(CrmUser)
class CrmUserAdmin(admin.ModelAdmin):
    list_display = ("name", "email", "external_id", "installation", "present", "fetched_at")
    list_filter = ("present",)
    search_fields = ("name", "email", "external_id")


@admin.register(UserMapping)
class UserMappingAdmin(admin.ModelAdmin):
    list_display = ("pbx_user", "crm_user", "installation", "manual", "updated_at")
    list_filter = ("manual",)


@admin.register(UserFetch)
class UserFetchAdmin(admin.ModelAdmin):
    list_display = ("installation", "state", "fetched", "created_at", "finished_at")
    list_filter = ("state",)


@admin.register(DeliveryLogEntry)
class DeliveryLogEntryAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "organization",
        "installation",
        "method_name",
        "http_method",
        "status_code",
        "ok",
        "duration_ms",
        "attempt",
    )
    list_filter = ("ok", "method_name")
    search_fields = ("url", "error", "organization__name")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
