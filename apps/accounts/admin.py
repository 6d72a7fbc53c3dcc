from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from apps.accounts import services
from apps.accounts.models import ApiKey, MagicLink, Membership, Organization, User


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ("user",)
    fields = ("user", "role", "created_at")
    readonly_fields = ("created_at",)


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "plan", "is_active", "created_at")
    list_filter = ("plan", "is_active")
    search_fields = ("name", "slug", "=id")
    prepopulated_fields = {"slug": ("name",)}
    inlines = [MembershipInline]


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    ordering = ("email",)
    list_display = ("email", "full_name", "is_staff", "is_active", "date_joined")
    list_filter = ("is_staff", "is_active", "memberships__organization")
    search_fields = ("email", "full_name", "=id")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("full_name", "preferences")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "organization", "role", "created_at")
    list_filter = ("organization", "role")
    search_fields = ("user__email", "organization__name", "organization__slug")
    list_select_related = ("user", "organization")
    autocomplete_fields = ("user", "organization")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "organization", "role", "created_by", "last_used_at", "revoked_at", "created_at")
    list_filter = ("organization", "role", ("revoked_at", admin.EmptyFieldListFilter))
    search_fields = ("name", "prefix", "created_by__email", "organization__slug")
    list_select_related = ("organization", "created_by")
    readonly_fields = ("organization", "prefix", "key_hash", "created_by", "last_used_at", "revoked_at", "created_at",
                       "updated_at")
    fields = ("name", "role", "expires_at") + readonly_fields
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False  # keys are made over the API, where the clear value can be shown once

    @admin.action(description="Revoke selected API keys")
    def revoke(self, request, queryset):
        count = 0
        for api_key in queryset.select_related("organization", "created_by").filter(revoked_at__isnull=True):
            services.api_key_revoke(api_key=api_key, actor=request.user)
            count += 1
        self.message_user(request, f"Revoked {count} API key(s).", messages.SUCCESS)


@admin.register(MagicLink)
class MagicLinkAdmin(admin.ModelAdmin):
    list_display = ("user", "created_at", "expires_at", "used_at")
    list_select_related = ("user",)
    search_fields = ("user__email",)
    readonly_fields = ("user", "token_hash", "expires_at", "used_at", "created_at")

    def has_add_permission(self, request):
        return False
