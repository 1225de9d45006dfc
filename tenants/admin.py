from django.contrib import admin

from tenants.models import Account, Membership, Organization, PbxUser, SmsNumber


class OrganizationInline(admin.TabularInline):
    model = Organization
    fields = ("name", "slug", "pbx_domain", "default_region")
    extra = 0
    show_change_link = True


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "organization_count", "created_at")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    inlines = [OrganizationInline]

    @admin.display(description="Organizations")
    def organization_count(self, obj: Account) -> int:
        return obj.organizations.count()


class PbxUserInline(admin.TabularInline):
    model = PbxUser
    fields = ("extension", "name", "email", "mobile")
    extra = 0


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ("name", "account", "slug", "pbx_domain", "default_region", "created_at")
    list_filter = ("account", "default_region")
    search_fields = ("name", "slug", "pbx_domain", "account__name")
    # The webhook secret is encrypted and never shown back.
    exclude = ("webhook_secret",)
    readonly_fields = ("webhook_key", "created_at", "updated_at")
    inlines = [PbxUserInline]


@admin.register(PbxUser)
class PbxUserAdmin(admin.ModelAdmin):
    list_display = ("extension", "name", "email", "mobile", "organization")
    list_filter = ("organization__account", "organization")
    search_fields = ("extension", "name", "email", "mobile", "organization__name")


@admin.register(SmsNumber)
class SmsNumberAdmin(admin.ModelAdmin):
    list_display = ("number", "label", "organization", "account")
    list_filter = ("account", "organization")
    search_fields = ("number", "label", "organization__name")
    filter_horizontal = ("users",)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "role", "account", "organization", "created_at")
    list_filter = ("role", "account")
    search_fields = ("user__username", "user__email", "account__name", "organization__name")
    autocomplete_fields = ("organization",)
