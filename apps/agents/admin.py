"""Operator console for agents and what they are built from: restart agents, enable/disable
tools, rotate credentials, revoke (stop) deployments — each through ``apps.agents.services``."""

from django.contrib import admin, messages

from apps.agents import crypto, services
from apps.agents.models import (
    Agent,
    AgentMemory,
    AgentTemplate,
    AgentVersion,
    Credential,
    Deployment,
    DeploymentStatus,
    ModelConfig,
    OrchestrationTemplate,
    PromptTemplate,
    Provider,
    ProviderUsage,
    Service,
    Tool,
)
from apps.runs.models import Execution
from kai_platform.admin import CREATED, ReadOnlyAdmin, admin_link, changelist_link
from kai_platform.admin import TenantAdmin as BaseTenantAdmin


class TenantAdmin(BaseTenantAdmin):
    pass


class AgentVersionInline(admin.TabularInline):
    model = AgentVersion
    extra = 0
    can_delete = False
    fields = ("version", "changed_fields", "created_by", "created_at")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("created_by")


@admin.register(Agent)
class AgentAdmin(TenantAdmin):
    list_display = (
        "agent_number",
        "name",
        "organization",
        "status",
        "is_active",
        "llm",
        "version",
        "execution_count",
        "average_execution_time",
        "last_execution",
        "last_heartbeat",
        "runs",
    )
    list_filter = (
        "organization",
        "status",
        "is_active",
        "agent_type",
        ("last_execution", admin.DateFieldListFilter),
        CREATED,
    )
    search_fields = ("name", "role", "=id", "organization__slug")
    readonly_fields = TenantAdmin.readonly_fields + (
        "agent_number",
        "version",
        "execution_count",
        "average_execution_time",
        "last_execution",
        "last_heartbeat",
    )
    inlines = [AgentVersionInline]
    actions = ["restart"]

    @admin.display(description="runs")
    def runs(self, obj):
        return changelist_link(Execution, "runs", agent__id__exact=obj.pk)

    @admin.action(description="Restart selected agents")
    def restart(self, request, queryset):
        done = 0
        for agent in queryset:
            services.agent_restart(agent=agent, actor=request.user)
            done += 1
        self.message_user(request, f"Restarted {done} agent(s).", messages.SUCCESS)


@admin.register(AgentVersion)
class AgentVersionAdmin(ReadOnlyAdmin):
    list_display = ("agent_link", "version", "changed_fields", "organization", "created_by", "created_at")
    list_filter = ("organization", CREATED)
    list_select_related = ("organization", "agent", "created_by")
    search_fields = ("=agent__id", "agent__name")

    @admin.display(description="agent", ordering="agent__name")
    def agent_link(self, obj):
        return admin_link(obj.agent)


@admin.register(AgentMemory)
class AgentMemoryAdmin(TenantAdmin):
    list_display = ("agent", "memory_type", "tags", "organization", "expires_at", "created_at")
    list_filter = ("organization", "memory_type", ("expires_at", admin.DateFieldListFilter), CREATED)
    list_select_related = ("organization", "agent")
    search_fields = ("agent__name", "memory_type")
    raw_id_fields = ("agent",)


@admin.register(Credential)
class CredentialAdmin(TenantAdmin):
    """Values never show here: only the mask and the key id."""

    list_display = (
        "name",
        "service_name",
        "credential_type",
        "masked",
        "encryption_key_id",
        "organization",
        "usage_count",
        "last_used",
        "expires_at",
    )
    list_filter = ("organization", "credential_type", "auto_rotate", "encryption_key_id", CREATED)
    search_fields = ("name", "service_name", "organization__slug")
    fields = (
        "name",
        "service_name",
        "credential_type",
        "description",
        "expires_at",
        "auto_rotate",
        "masked",
        "encryption_key_id",
        "usage_count",
        "last_used",
    ) + TenantAdmin.readonly_fields
    readonly_fields = TenantAdmin.readonly_fields + ("masked", "encryption_key_id", "usage_count", "last_used")
    actions = ["rotate"]

    def has_add_permission(self, request):
        return False  # values are entered through the API, which encrypts them

    @admin.action(description="Rotate: re-encrypt selected credentials under the newest key")
    def rotate(self, request, queryset):
        done, unreadable = 0, []
        for credential in queryset:
            try:
                services.credential_rotate(credential=credential, actor=request.user)
                done += 1
            except crypto.SecretUnreadable:
                unreadable.append(credential.name)
        self.message_user(request, f"Re-encrypted {done} credential(s).", messages.SUCCESS)
        if unreadable:
            self.message_user(request, f"No configured key opens: {', '.join(unreadable)}.", messages.ERROR)


@admin.register(Provider)
class ProviderAdmin(TenantAdmin):
    list_display = (
        "name",
        "provider_type",
        "organization",
        "default_model",
        "budget_limit",
        "is_default",
        "is_active",
        "last_validation_ok",
        "last_validated_at",
    )
    list_filter = ("organization", "provider_type", "is_active", "last_validation_ok", CREATED)
    list_select_related = ("organization", "credential")
    search_fields = ("name", "base_url", "organization__slug")
    raw_id_fields = ("credential",)


@admin.register(ProviderUsage)
class ProviderUsageAdmin(TenantAdmin):
    list_display = ("provider", "organization", "day", "calls", "input_tokens", "output_tokens", "cost")
    list_filter = ("organization", "day")
    list_select_related = ("organization", "provider")
    date_hierarchy = "day"


@admin.register(ModelConfig)
class ModelConfigAdmin(TenantAdmin):
    list_display = ("name", "provider_type", "model", "provider", "organization", "is_active")
    list_filter = ("organization", "provider_type", "is_active")
    list_select_related = ("organization", "provider")
    search_fields = ("name", "model")


@admin.register(Tool)
class ToolAdmin(TenantAdmin):
    list_display = ("name", "tool_type", "enabled", "organization", "updated_at")
    list_filter = ("organization", "tool_type", "enabled", CREATED)
    search_fields = ("name", "description")
    actions = ["enable", "disable", "toggle"]

    def _set_enabled(self, request, queryset, enabled: bool):
        done = 0
        for tool in queryset.filter(enabled=not enabled):
            services.tool_toggle(tool=tool, actor=request.user)
            done += 1
        self.message_user(request, f"{'Enabled' if enabled else 'Disabled'} {done} tool(s).", messages.SUCCESS)

    @admin.action(description="Enable selected tools")
    def enable(self, request, queryset):
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable selected tools")
    def disable(self, request, queryset):
        self._set_enabled(request, queryset, False)

    @admin.action(description="Toggle enabled")
    def toggle(self, request, queryset):
        done = 0
        for tool in queryset:
            services.tool_toggle(tool=tool, actor=request.user)
            done += 1
        self.message_user(request, f"Toggled {done} tool(s).", messages.SUCCESS)


@admin.register(PromptTemplate)
class PromptTemplateAdmin(TenantAdmin):
    list_display = ("name", "is_official", "organization", "updated_at")
    list_filter = ("organization", "is_official")
    search_fields = ("name", "template")


@admin.register(AgentTemplate)
class AgentTemplateAdmin(TenantAdmin):
    list_display = ("name", "category", "agent_type", "is_official", "organization")
    list_filter = ("organization", "category", "is_official")
    search_fields = ("name", "description")


@admin.register(OrchestrationTemplate)
class OrchestrationTemplateAdmin(TenantAdmin):
    list_display = ("name", "category", "pattern", "is_official", "organization")
    list_filter = ("organization", "category", "pattern", "is_official")
    search_fields = ("name", "description")


@admin.register(Service)
class ServiceAdmin(TenantAdmin):
    list_display = ("name", "service_type", "status", "last_seen", "response_time_ms", "endpoint", "organization")
    list_filter = ("organization", "service_type", "status", ("last_seen", admin.DateFieldListFilter))
    search_fields = ("name", "endpoint")
    actions = ["refresh"]

    @admin.action(description="Refresh liveness now")
    def refresh(self, request, queryset):
        done = 0
        for service in queryset:
            services.service_refresh(service=service, actor=request.user)
            done += 1
        self.message_user(request, f"Refreshed {done} service(s).", messages.SUCCESS)


@admin.register(Deployment)
class DeploymentAdmin(TenantAdmin):
    list_display = (
        "name",
        "agent",
        "status",
        "channels",
        "invocation_count",
        "last_invoked_at",
        "started_at",
        "stopped_at",
        "organization",
    )
    list_filter = ("organization", "status", ("started_at", admin.DateFieldListFilter))
    list_select_related = ("organization", "agent")
    search_fields = ("name", "key_prefix")
    readonly_fields = TenantAdmin.readonly_fields + ("key_prefix", "invocation_count", "last_invoked_at", "stopped_at")
    exclude = ("key_hash",)
    actions = ["stop"]

    @admin.action(description="Revoke (stop) selected deployments: their keys stop working")
    def stop(self, request, queryset):
        done = 0
        for deployment in queryset.filter(status=DeploymentStatus.RUNNING):
            services.deployment_stop(deployment=deployment, actor=request.user)
            done += 1
        self.message_user(request, f"Revoked {done} deployment(s).", messages.SUCCESS)
