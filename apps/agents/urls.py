from django.urls import path

from apps.agents import mcp_views, upload_views, views
from kai_platform.api.routers import router

router.register("agents", views.AgentViewSet, basename="agent")
router.register("credentials", views.CredentialViewSet, basename="credential")
router.register("api-keys", views.ExternalApiKeyViewSet, basename="external-api-key")
router.register("providers", views.ProviderViewSet, basename="provider")
router.register("models", views.ModelConfigViewSet, basename="model-config")
router.register("tools", views.ToolViewSet, basename="tool")
# the more specific template prefixes first
router.register("templates/agents", views.AgentTemplateViewSet, basename="agent-template")
router.register("templates/orchestrations", views.OrchestrationTemplateViewSet, basename="orchestration-template")
router.register("templates", views.PromptTemplateViewSet, basename="prompt-template")
router.register("services", views.ServiceViewSet, basename="service")
router.register("deployments", views.DeploymentViewSet, basename="deployment")

urlpatterns = [
    path("deploy", views.DeployView.as_view(), name="deploy"),
    path(
        "tools/configurations/<str:tool_name>/schema",
        views.ToolConfigurationSchemaView.as_view(),
        name="tool-configuration-schema",
    ),
    path("mcp", mcp_views.MCPMessageView.as_view(), name="mcp-messages"),
    path("agents/<uuid:pk>/upload", upload_views.AgentUploadView.as_view(), name="agent-upload"),
    path("deployments/<uuid:pk>/invoke", views.DeploymentInvokeView.as_view(), name="deployment-invoke"),
]
