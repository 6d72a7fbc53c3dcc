"""Hub client events of the crews (agent runs) app (``apps.events.client_events``): thin adapters over its REST
services, registered by its ``AppConfig.ready``."""

from __future__ import annotations

from apps.agents.calls import agent_call_start
from apps.agents.models import Agent
from apps.events.client_events import register, require, uuid_or_404
from apps.runs.models import ExecutionKind
from apps.runs.services import PRIORITY_NAMES
from kai_platform.tenancy.viewsets import raise_not_found


def _views():
    # deferred: start-up — AppConfig.ready loads this module in every process; views and serializers load on the first client event
    from apps.crews import views

    return views


@register("agent:execute", view=lambda: _views().AgentRunViewSet, action="execute", method="POST")
def _agent_execute(*, user, auth, data, request):
    """``POST agents/{id}/execute`` with ``{agent_id, command: AgentCommand, params?}``; the run's
    progress arrives as events (``agent:execution_started``…), not as a wait on the socket."""
    # deferred: start-up — AppConfig.ready loads this module in every process; views and serializers load on the first client event
    from apps.crews.serializers import AgentExecuteSerializer

    agent = Agent.objects.for_org(auth.organization).filter(pk=uuid_or_404(require(data, "agent_id"))).first()
    if agent is None:
        raise_not_found(Agent)  # the REST view's 404: AGENT_001 and its detail
    body = {key: data[key] for key in ("command", "params") if key in data}
    serializer = AgentExecuteSerializer(data=body, context={"request": request})
    serializer.is_valid(raise_exception=True)
    valid = serializer.validated_data
    command = valid["command"]
    execution = agent_call_start(
        actor=user,
        kind=ExecutionKind.AGENT_EXECUTE,
        agent=agent,
        run_name=f"{agent.name} - {command['action']}",
        definition={
            "action": command["action"],
            "parameters": command["parameters"],
            "context": command["context"],
            "user_id": command.get("user_id") or str(user.pk),
            "request_id": command.get("request_id") or data.get("request_id") or "",
            "voice_input": command["voice_input"],
        },
        params=valid["params"],
        priority=PRIORITY_NAMES[command["priority"]],
    )
    return {"success": True, "agent_id": agent.pk, "execution_id": execution.pk, "status": execution.status}
