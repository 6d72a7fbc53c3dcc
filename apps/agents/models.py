"""Agents and everything they are built from: LLM providers and model configurations, encrypted
credentials, tools, memory, prompt/agent/orchestration templates, the services registry and
deployments. Every model is a ``TenantModel``."""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.db import models
from django.utils import timezone

from kai_platform.api.errors import codes
from kai_platform.llm import PROVIDER_TYPES
from kai_platform.tenancy.models import TenantModel


class AgentStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    IDLE = "idle", "Idle"
    ACTIVE = "active", "Active"
    EXECUTING = "executing", "Executing"
    OFFLINE = "offline", "Offline"
    ERROR = "error", "Error"
    DISABLED = "disabled", "Disabled"


#: statuses a client may set; executing/error belong to the run engine
CLIENT_SETTABLE_STATUSES = (
    AgentStatus.DRAFT,
    AgentStatus.IDLE,
    AgentStatus.ACTIVE,
    AgentStatus.OFFLINE,
    AgentStatus.DISABLED,
)


class Agent(TenantModel):
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    role = models.CharField(max_length=300, blank=True)
    goal = models.TextField(blank=True)
    backstory = models.TextField(blank=True)
    llm = models.CharField(max_length=200, blank=True, help_text="Model name; empty = the organization's default.")
    tools = ArrayField(models.CharField(max_length=100), default=list, blank=True)
    allow_delegation = models.BooleanField(default=False)
    verbose = models.BooleanField(default=False)
    agent_type = models.CharField(max_length=50, default="assistant", blank=True)
    config = models.JSONField(default=dict, blank=True)
    config_yaml = models.TextField(blank=True)
    agent_number = models.PositiveIntegerField(editable=False)
    status = models.CharField(max_length=20, choices=AgentStatus.choices, default=AgentStatus.IDLE)
    last_error = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)
    voice_enabled = models.BooleanField(default=False)
    version = models.PositiveIntegerField(default=1, editable=False)
    execution_count = models.PositiveIntegerField(default=0, editable=False)
    average_execution_time = models.FloatField(default=0.0, editable=False, help_text="Seconds.")
    last_execution = models.DateTimeField(null=True, blank=True, editable=False)
    last_heartbeat = models.DateTimeField(null=True, blank=True, editable=False)

    #: the error code of the 404 for an unknown one (docs/api.md)
    not_found_code = codes.AGENT_NOT_FOUND

    class Meta(TenantModel.Meta):
        constraints = [models.UniqueConstraint(fields=["organization", "agent_number"], name="uniq_agent_number")]
        indexes = [
            models.Index(fields=["organization", "status"], name="agent_org_status"),
            models.Index(fields=["organization", "-created_at"], name="agent_org_created"),
        ]

    def __str__(self) -> str:
        return f"#{self.agent_number} {self.name}"


#: the fields whose change is a configuration change (bumps ``version``)
AGENT_CONFIG_FIELDS = (
    "name",
    "description",
    "role",
    "goal",
    "backstory",
    "llm",
    "tools",
    "allow_delegation",
    "verbose",
    "agent_type",
    "config",
    "config_yaml",
    "voice_enabled",
    "is_active",
)


class AgentVersion(TenantModel):
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    snapshot = models.JSONField(default=dict)
    changed_fields = ArrayField(models.CharField(max_length=50), default=list, blank=True)

    class Meta(TenantModel.Meta):
        ordering = ("-version",)
        constraints = [models.UniqueConstraint(fields=["agent", "version"], name="uniq_agent_version")]


class AgentMemory(TenantModel):
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="memories")
    memory_type = models.CharField(max_length=50, default="general")
    content = models.JSONField()
    tags = ArrayField(models.CharField(max_length=64), default=list, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta(TenantModel.Meta):
        verbose_name_plural = "agent memories"
        indexes = [
            models.Index(fields=["agent", "memory_type", "-created_at"], name="memory_agent_type"),
            GinIndex(fields=["tags"], name="memory_tags_gin"),
        ]

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()


class CredentialType(models.TextChoices):
    API_KEY = "api_key", "API key"
    PASSWORD = "password", "Password"
    OAUTH_TOKEN = "oauth_token", "OAuth token"
    CERTIFICATE = "certificate", "Certificate"


class Credential(TenantModel):
    """A secret for an external service, encrypted at rest (MultiFernet). ``masked`` is the only
    form list/detail answers show; the clear value is decrypted only for the call that needs it."""

    name = models.CharField(max_length=200)
    service_name = models.CharField(max_length=100, db_index=True)
    credential_type = models.CharField(max_length=20, choices=CredentialType.choices, default=CredentialType.API_KEY)
    encrypted_value = models.TextField(editable=False)
    encryption_key_id = models.CharField(max_length=16, editable=False)
    masked = models.CharField(max_length=40, editable=False, blank=True)
    description = models.TextField(blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used = models.DateTimeField(null=True, blank=True, editable=False)
    usage_count = models.PositiveIntegerField(default=0, editable=False)
    auto_rotate = models.BooleanField(default=False)

    class Meta(TenantModel.Meta):
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="uniq_credential_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.service_name}, {self.masked})"


class Provider(TenantModel):
    name = models.CharField(max_length=100)
    provider_type = models.CharField(max_length=30, choices=[(p, p) for p in PROVIDER_TYPES])
    base_url = models.URLField(max_length=500, blank=True)
    credential = models.ForeignKey(Credential, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    default_model = models.CharField(max_length=200, blank=True)
    api_version = models.CharField(max_length=40, blank=True, help_text="Azure OpenAI api-version.")
    timeout_seconds = models.FloatField(null=True, blank=True)
    budget_limit = models.DecimalField(
        max_digits=12, decimal_places=4, null=True, blank=True, help_text="USD per calendar month; empty = no limit."
    )
    is_default = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    config = models.JSONField(default=dict, blank=True)
    last_validated_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_validation_ok = models.BooleanField(null=True, editable=False)
    last_validation_error = models.TextField(blank=True, editable=False)

    class Meta(TenantModel.Meta):
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="uniq_provider_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.provider_type})"


class ProviderUsage(TenantModel):
    """Usage of one provider on one day (UTC)."""

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="usage")
    day = models.DateField()
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    calls = models.PositiveIntegerField(default=0)

    class Meta(TenantModel.Meta):
        ordering = ("-day",)
        constraints = [models.UniqueConstraint(fields=["provider", "day"], name="uniq_provider_day")]


class ModelConfig(TenantModel):
    """A named model configuration (``models``, docs/agents.md): provider + provider model id + parameters."""

    name = models.CharField(max_length=200)
    provider = models.ForeignKey(Provider, null=True, blank=True, on_delete=models.CASCADE, related_name="models")
    provider_type = models.CharField(max_length=30, choices=[(p, p) for p in PROVIDER_TYPES])
    model = models.CharField(max_length=200)
    api_key_name = models.CharField(max_length=200, blank=True)
    parameters = models.JSONField(default=dict, blank=True)
    is_active = models.BooleanField(default=True)

    class Meta(TenantModel.Meta):
        verbose_name = "model configuration"
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="uniq_model_name")]

    def __str__(self) -> str:
        return self.name


class ToolType(models.TextChoices):
    BUILTIN = "builtin", "Built-in"
    CUSTOM = "custom", "Custom (HTTP endpoint)"
    HTTP = "http", "HTTP request"


class Tool(TenantModel):
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    tool_type = models.CharField(max_length=20, choices=ToolType.choices, default=ToolType.CUSTOM)
    configuration = models.JSONField(default=dict, blank=True)
    config_schema = models.JSONField(default=dict, blank=True, help_text="JSON schema of `configuration`.")
    parameters_schema = models.JSONField(default=dict, blank=True, help_text="JSON schema of a call's arguments.")
    enabled = models.BooleanField(default=True)

    class Meta(TenantModel.Meta):
        ordering = ("name",)
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="uniq_tool_name")]

    def __str__(self) -> str:
        return self.name


class PromptTemplate(TenantModel):
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    template = models.TextField()
    variables = ArrayField(models.CharField(max_length=100), default=list, blank=True)
    is_official = models.BooleanField(default=False, editable=False)

    class Meta(TenantModel.Meta):
        # an organization's own template may share a builtin's name (e.g. its own "Research Agent Template")
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "name"], condition=models.Q(is_official=False), name="uniq_prompt_template_name"
            ),
            models.UniqueConstraint(
                fields=["organization", "name"],
                condition=models.Q(is_official=True),
                name="uniq_official_prompt_template_name",
            ),
        ]


class AgentTemplate(TenantModel):
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    category = models.CharField(max_length=50, blank=True, db_index=True)
    agent_type = models.CharField(max_length=50, default="assistant")
    config_yaml = models.TextField()
    is_official = models.BooleanField(default=False, editable=False)
    official_key = models.CharField(max_length=100, blank=True, editable=False)

    class Meta(TenantModel.Meta):
        ordering = ("category", "name")


class OrchestrationTemplate(TenantModel):
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    category = models.CharField(max_length=50, blank=True, db_index=True)
    pattern = models.CharField(max_length=30, default="sequential")
    config_yaml = models.TextField()
    is_official = models.BooleanField(default=False, editable=False)
    official_key = models.CharField(max_length=100, blank=True, editable=False)

    class Meta(TenantModel.Meta):
        ordering = ("category", "name")


class ServiceType(models.TextChoices):
    AGENT = "agent", "Agent"
    TOOL = "tool", "Tool"
    PROVIDER = "provider", "LLM provider"
    ENDPOINT = "endpoint", "Endpoint"


class ServiceStatus(models.TextChoices):
    ONLINE = "online", "Online"
    OFFLINE = "offline", "Offline"
    DEGRADED = "degraded", "Degraded"
    UNKNOWN = "unknown", "Unknown"


class Service(TenantModel):
    """An entry of the services registry: a running agent, a tool, a provider or an endpoint."""

    name = models.CharField(max_length=200)
    service_type = models.CharField(max_length=20, choices=ServiceType.choices, default=ServiceType.ENDPOINT)
    ref_id = models.UUIDField(null=True, blank=True, help_text="The agent/tool/provider this entry stands for.")
    endpoint = models.URLField(max_length=500, blank=True)
    capabilities = ArrayField(models.CharField(max_length=100), default=list, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=ServiceStatus.choices, default=ServiceStatus.UNKNOWN)
    last_seen = models.DateTimeField(null=True, blank=True)
    response_time_ms = models.FloatField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta(TenantModel.Meta):
        ordering = ("service_type", "name")
        constraints = [
            models.UniqueConstraint(fields=["organization", "service_type", "name"], name="uniq_service_name")
        ]


class DeploymentStatus(models.TextChoices):
    RUNNING = "running", "Running"
    STOPPED = "stopped", "Stopped"


class Deployment(TenantModel):
    """An agent exposed at its own invocation URL, called with a deployment-scoped key."""

    name = models.CharField(max_length=200)
    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.CASCADE, related_name="deployments")
    orchestration_id = models.UUIDField(null=True, blank=True)
    channels = ArrayField(models.CharField(max_length=20), default=list, blank=True)
    status = models.CharField(max_length=20, choices=DeploymentStatus.choices, default=DeploymentStatus.RUNNING)
    key_prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    started_at = models.DateTimeField(default=timezone.now)
    stopped_at = models.DateTimeField(null=True, blank=True)
    invocation_count = models.PositiveIntegerField(default=0, editable=False)
    last_invoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"
