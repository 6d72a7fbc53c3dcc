"""The crews app's views, by domain; ``apps.crews.urls`` routes them by these names."""

from apps.crews.views.crews import (
    AgentGenerationView,
    CrewGenerationView,
    CrewViewSet,
    OrchestrationViewSet,
    TaskDefinitionViewSet,
    TaskGenerationView,
)
from apps.crews.views.executions import (
    ExecutionHistoryViewSet,
    ExecutionLogViewSet,
    ExecutionTraceViewSet,
    ExecutionViewSet,
    TaskStatusViewSet,
    TraceViewSet,
    generated_run_name,
)
from apps.crews.views.runtime import (
    AgentUsageViewSet,
    RuntimeAgentViewSet,
    RuntimeStatusView,
    UsageView,
)
from apps.crews.views.streaming import AgentRunViewSet, EventStreamRenderer, sse_events

__all__ = [
    "AgentGenerationView",
    "AgentRunViewSet",
    "AgentUsageViewSet",
    "CrewGenerationView",
    "CrewViewSet",
    "EventStreamRenderer",
    "ExecutionHistoryViewSet",
    "ExecutionLogViewSet",
    "ExecutionTraceViewSet",
    "ExecutionViewSet",
    "OrchestrationViewSet",
    "RuntimeAgentViewSet",
    "RuntimeStatusView",
    "TaskDefinitionViewSet",
    "TaskGenerationView",
    "TaskStatusViewSet",
    "TraceViewSet",
    "UsageView",
    "generated_run_name",
    "sse_events",
]
