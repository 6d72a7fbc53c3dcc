"""Operator console for identity: organizations (members inline), users (memberships inline),
memberships, API keys (revoke through the service) and magic links."""

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import Count
from django.utils import timezone

from apps.accounts import services
from apps.accounts.models import ApiKey, MagicLink, Membership, Organization, User
from kai_platform.admin import CREATED, admin_link


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ("user",)
    fields = ("user", "role", "created_at")
    readonly_fields = ("created_at",)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user", "organization")


class UserMembershipInline(admin.TabularInline):
    model = Membership
    fk_name = "user"
    extra = 0
    autocomplete_fields = ("organization",)
    fields = ("organization", "role", "created_at")
    readonly_fields = ("created_at",)
    verbose_name_plural = "memberships"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user", "organization")


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "plan", "is_active", "member_count", "created_at")
    list_filter = ("plan", "is_active", CREATED)
    search_fields = ("name", "slug", "=id")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("id", "created_at", "updated_at")
    inlines = [MembershipInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_members=Count("memberships"))

    @admin.display(description="members", ordering="_members")
    def member_count(self, obj):
        return obj._members


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    ordering = ("email",)
    list_display = ("email", "full_name", "is_staff", "is_active", "organization_count", "last_login", "date_joined")
    list_filter = (
        "is_staff",
        "is_superuser",
        "is_active",
        "memberships__organization",
        "memberships__role",
        ("date_joined", admin.DateFieldListFilter),
    )
    search_fields = ("email", "full_name", "=id")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("full_name", "preferences")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)
    inlines = [UserMembershipInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_organizations=Count("memberships", distinct=True))

    @admin.display(description="organizations", ordering="_organizations")
    def organization_count(self, obj):
        return obj._organizations


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "organization", "role", "created_at")
    list_filter = ("organization", "role", CREATED)
    search_fields = ("user__email", "organization__name", "organization__slug")
    list_select_related = ("user", "organization")
    autocomplete_fields = ("user", "organization")


class ApiKeyStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return (("active", "Active"), ("revoked", "Revoked"), ("expired", "Expired"))

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True).exclude(expires_at__lte=now)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        if self.value() == "expired":
            return queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "prefix",
        "organization",
        "role",
        "status",
        "created_by",
        "last_used_at",
        "expires_at",
        "created_at",
    )
    list_filter = (ApiKeyStatusFilter, "organization", "role", ("last_used_at", admin.DateFieldListFilter), CREATED)
    search_fields = ("name", "prefix", "created_by__email", "organization__slug")
    list_select_related = ("organization", "created_by")
    readonly_fields = (
        "organization",
        "prefix",
        "key_hash",
        "created_by",
        "last_used_at",
        "revoked_at",
        "created_at",
        "updated_at",
    )
    fields = ("name", "role", "expires_at") + readonly_fields
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False  # keys are made over the API, where the clear value can be shown once

    @admin.display(description="status")
    def status(self, obj):
        if obj.revoked_at is not None:
            return "revoked"
        if obj.expires_at is not None and obj.expires_at <= timezone.now():
            return "expired"
        return "active"

    @admin.action(description="Revoke selected API keys")
    def revoke(self, request, queryset):
        count = 0
        for api_key in queryset.select_related("organization", "created_by").filter(revoked_at__isnull=True):
            services.api_key_revoke(api_key=api_key, actor=request.user)
            count += 1
        self.message_user(request, f"Revoked {count} API key(s).", messages.SUCCESS)


@admin.register(MagicLink)
class MagicLinkAdmin(admin.ModelAdmin):
    list_display = ("user_link", "created_at", "expires_at", "used_at")
    list_filter = (("used_at", admin.EmptyFieldListFilter), CREATED)
    list_select_related = ("user",)
    search_fields = ("user__email",)
    readonly_fields = ("user", "token_hash", "expires_at", "used_at", "created_at")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="user", ordering="user__email")
    def user_link(self, obj):
        return admin_link(obj.user)
