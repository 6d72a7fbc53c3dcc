"""Operator console: SSO connections (staff confirm domain ownership), identities, SCIM tokens."""

from allauth.account.models import EmailAddress
from allauth.socialaccount.models import SocialAccount, SocialApp, SocialToken
from django.contrib import admin, messages

from apps.sso import services
from apps.sso.models import ScimGroup, ScimToken, ScimUser, SSOConnection, SSOIdentity


@admin.register(SSOConnection)
class SSOConnectionAdmin(admin.ModelAdmin):
    list_display = (
        "organization",
        "protocol",
        "name",
        "enforced",
        "is_active",
        "domains_confirmed_by_staff",
        "created_at",
    )
    list_filter = ("protocol", "enforced", "is_active", "domains_confirmed_by_staff")
    search_fields = ("organization__slug", "organization__name", "name")
    readonly_fields = (
        "client_secret_encrypted",
        "secret_key_id",
        "verified_domains",
        "domain_verification_token",
        "domains_confirmed_by_staff",
    )
    actions = ["confirm_domains"]

    @admin.action(description="Confirm the organization owns the allowed email domains")
    def confirm_domains(self, request, queryset):
        for connection in queryset:
            services.connection_confirm_domains(connection=connection, actor=request.user)
        self.message_user(request, f"Confirmed domains of {queryset.count()} connection(s).", messages.SUCCESS)


@admin.register(SSOIdentity)
class SSOIdentityAdmin(admin.ModelAdmin):
    list_display = ("email", "organization", "connection", "subject", "last_login_at")
    search_fields = ("email", "subject")
    readonly_fields = ("claims",)


@admin.register(ScimToken)
class ScimTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "organization", "prefix", "revoked_at", "last_used_at")
    readonly_fields = ("token_hash", "prefix")


admin.site.register(ScimUser, list_display=("user", "organization", "external_id", "active", "role"))
admin.site.register(ScimGroup, list_display=("display_name", "organization", "external_id"))


def _hide_allauth_models() -> None:
    """allauth's own tables stay unused here (connections configure it per request; identities
    live in SSOIdentity): keep them out of the console so nobody configures SSO there."""
    for model in (EmailAddress, SocialAccount, SocialApp, SocialToken):
        if admin.site.is_registered(model):
            admin.site.unregister(model)


_hide_allauth_models()
