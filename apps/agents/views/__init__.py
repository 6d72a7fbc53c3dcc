"""Thin views over apps.agents services/selectors, one module per domain."""

from apps.agents.views.agents import (
    AgentViewSet,
)
from apps.agents.views.deployments import (
    DeploymentInvokeView,
    DeploymentViewSet,
    DeployView,
    ServiceViewSet,
)
from apps.agents.views.providers import (
    ModelConfigViewSet,
    ProviderViewSet,
    ToolConfigurationSchemaView,
    ToolViewSet,
)
from apps.agents.views.secrets import (
    CredentialViewSet,
    ExternalApiKeyViewSet,
)
from apps.agents.views.templates import (
    AgentTemplateViewSet,
    OrchestrationTemplateViewSet,
    PromptTemplateViewSet,
)

__all__ = [
    "AgentTemplateViewSet",
    "AgentViewSet",
    "CredentialViewSet",
    "DeployView",
    "DeploymentInvokeView",
    "DeploymentViewSet",
    "ExternalApiKeyViewSet",
    "ModelConfigViewSet",
    "OrchestrationTemplateViewSet",
    "PromptTemplateViewSet",
    "ProviderViewSet",
    "ServiceViewSet",
    "ToolConfigurationSchemaView",
    "ToolViewSet",
]
