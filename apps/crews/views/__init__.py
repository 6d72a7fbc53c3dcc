"""The crews app's views, by domain; ``apps.crews.urls`` routes them by these names."""

from apps.crews.views.crews import (  # noqa: F401
    AgentGenerationView,
    CrewGenerationView,
    CrewViewSet,
    OrchestrationViewSet,
    TaskDefinitionViewSet,
    TaskGenerationView,
)
from apps.crews.views.executions import (  # noqa: F401
    ExecutionHistoryViewSet,
    ExecutionLogViewSet,
    ExecutionTraceViewSet,
    ExecutionViewSet,
    TaskStatusViewSet,
    TraceViewSet,
    generated_run_name,
)
from apps.crews.views.runtime import (  # noqa: F401
    AgentUsageViewSet,
    RuntimeAgentViewSet,
    RuntimeStatusView,
    UsageView,
)
from apps.crews.views.streaming import AgentRunViewSet, EventStreamRenderer, sse_events  # noqa: F401
