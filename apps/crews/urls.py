"""Routes of the run engine. Explicit paths come before the router's, so ``tasks/{id}/status``
(an agent task run) never clashes with the task-definition routes under ``tasks``."""

from django.urls import path

from apps.crews import replay, views
from apps.crews.execution_batch import ExecutionBatchView
from kai_platform.api.routers import router

router.register("crews", views.CrewViewSet, basename="crew")
router.register("tasks", views.TaskDefinitionViewSet, basename="task-definition")
router.register("orchestrations", views.OrchestrationViewSet, basename="orchestration")
router.register("executions", views.ExecutionViewSet, basename="execution")
router.register("execution-history", views.ExecutionHistoryViewSet, basename="execution-history")
router.register("traces", views.TraceViewSet, basename="trace")

_agent_runs = views.AgentRunViewSet

urlpatterns = [
    path(
        "executions/<str:pk>/replay", replay.ExecutionReplayViewSet.as_view({"post": "replay"}), name="execution-replay"
    ),
    path("executions/batch", ExecutionBatchView.as_view(), name="execution-batch"),
    path("tasks/<str:pk>/status", views.TaskStatusViewSet.as_view({"get": "retrieve"}), name="task-status"),
    path(
        "execution-logs/<str:pk>", views.ExecutionLogViewSet.as_view({"get": "retrieve"}), name="execution-log-detail"
    ),
    path(
        "execution-trace/<str:pk>",
        views.ExecutionTraceViewSet.as_view({"get": "retrieve"}),
        name="execution-trace-detail",
    ),
    path("agents/<str:pk>/task", _agent_runs.as_view({"post": "task"}), name="agent-task"),
    path("agents/<str:pk>/command", _agent_runs.as_view({"post": "command"}), name="agent-command"),
    path("agents/<str:pk>/execute", _agent_runs.as_view({"post": "execute"}), name="agent-execute"),
    path("agents/<str:pk>/stream-prompt", _agent_runs.as_view({"post": "stream_prompt"}), name="agent-stream-prompt"),
    path("agent-generation/generate", views.AgentGenerationView.as_view(), name="agent-generation"),
    path("task-generation/generate", views.TaskGenerationView.as_view(), name="task-generation"),
    path("crew-generation/generate", views.CrewGenerationView.as_view(), name="crew-generation"),
    path("usage", views.UsageView.as_view(), name="usage"),
    path("usage/agents/<str:pk>", views.AgentUsageViewSet.as_view({"get": "retrieve"}), name="usage-agent"),
    path("runtime/status", views.RuntimeStatusView.as_view(), name="runtime-status"),
    path("runtime/agents", views.RuntimeAgentViewSet.as_view({"get": "list"}), name="runtime-agent-list"),
]
