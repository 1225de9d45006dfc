"""Django admin for platform staff: the spec catalog (approve/reject custom spec versions),
installations (secrets, tokens and captured values are never shown), OAuth states, CRM users,
user mappings, the delivery log, and the event pipeline: notices, calls and their CRM
activities, SMS messages, inbox events, outbound callbacks and their deliveries.

The pipeline's rows are written by the portal's services and workers: here they are read-only
(a notice can be marked resolved). Encrypted secrets are never shown."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from integrations import services
from integrations.models import (
    Call,
    CallActivity,
    CallbackDelivery,
    CallbackSubscription,
    CrmUser,
    DeliveryLogEntry,
    InboxEvent,
    Installation,
    IntegrationSpec,
    Message,
    Notice,
    OAuthState,
    SpecVersion,
    UserFetch,
    UserMapping,
)


class ReadOnlyInline(admin.TabularInline):
    """Rows listed under their parent, each linking to its own page; none added or deleted
    here. Subclasses set `model` and `fields` (all read-only)."""

    extra = 0
    can_delete = False
    show_change_link = True

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class SpecVersionInline(ReadOnlyInline):
    model = SpecVersion
    fields = ("number", "status", "uploaded_by", "reviewed_by", "reviewed_at", "created_at")


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
        try:
            services.spec_version_review(reviewer=request.user, version=version, approve=approve)
        except ValidationError as exc:
            modeladmin.message_user(request, f"{version}: {' '.join(exc.messages)}", messages.ERROR)
            continue
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


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows the portal's services and workers write: staff look, the portal changes them."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Notice)
class NoticeAdmin(admin.ModelAdmin):
    list_display = ("created_at", "organization", "installation", "level", "__str__", "resolved")
    list_filter = ("level", ("resolved_at", admin.EmptyFieldListFilter))
    search_fields = ("message", "organization__name", "installation__label")
    list_select_related = ("organization", "installation__spec_version__spec")
    readonly_fields = ("organization", "installation", "level", "message", "action_url")
    fields = (*readonly_fields, "resolved_at")
    date_hierarchy = "created_at"

    @admin.display(boolean=True)
    def resolved(self, obj: Notice) -> bool:
        return obj.resolved_at is not None

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


class CallActivityInline(ReadOnlyInline):
    model = CallActivity
    fields = ("installation", "state", "activity_id", "contact_id", "last_error", "updated_at")


@admin.register(Call)
class CallAdmin(ReadOnlyAdmin):
    list_display = ("call_id", "organization", "status", "created_at", "updated_at")
    list_filter = ("status", "organization__account")
    search_fields = ("call_id", "organization__name")
    list_select_related = ("organization",)
    date_hierarchy = "created_at"
    inlines = [CallActivityInline]


@admin.register(CallActivity)
class CallActivityAdmin(ReadOnlyAdmin):
    list_display = (
        "call",
        "installation",
        "state",
        "activity_id",
        "contact_id",
        "waiting_for_reconnect",
        "next_attempt_at",
        "updated_at",
    )
    list_filter = ("state", "waiting_for_reconnect", "recording_uploaded")
    search_fields = ("call__call_id", "activity_id", "contact_id", "last_error")
    list_select_related = ("call", "installation__spec_version__spec", "installation__organization")


@admin.register(Message)
class MessageAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "organization",
        "direction",
        "from_number",
        "to_number",
        "status",
        "attempts",
    )
    list_filter = ("direction", "status")
    search_fields = ("from_number", "to_number", "messageid", "message_ref", "organization__name")
    list_select_related = ("organization",)
    date_hierarchy = "created_at"


@admin.register(InboxEvent)
class InboxEventAdmin(ReadOnlyAdmin):
    """Bodies and headers are stored with their secrets redacted."""

    list_display = (
        "received_at",
        "source",
        "event_type",
        "organization",
        "state",
        "attempts",
        "processed_at",
    )
    list_filter = ("source", "state", "event_type")
    search_fields = ("dedup_key", "correlation_key", "organization__name", "last_error")
    list_select_related = ("organization",)
    date_hierarchy = "received_at"


@admin.register(CallbackSubscription)
class CallbackSubscriptionAdmin(ReadOnlyAdmin):
    list_display = (
        "name",
        "organization",
        "callback_type",
        "active",
        "consecutive_failures",
        "disabled_at",
    )
    list_filter = ("callback_type", "active")
    search_fields = ("name", "url", "organization__name")
    list_select_related = ("organization",)
    # The Basic password and the signing secret are encrypted and never shown.
    exclude = ("auth_password", "signing_secret")


@admin.register(CallbackDelivery)
class CallbackDeliveryAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "subscription",
        "state",
        "attempts",
        "last_status",
        "next_attempt_at",
        "delivered_at",
    )
    list_filter = ("state",)
    search_fields = ("webhook_id", "subscription__name", "subscription__organization__name")
    list_select_related = ("subscription",)
    date_hierarchy = "created_at"
