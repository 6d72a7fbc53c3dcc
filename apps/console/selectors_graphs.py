"""Reads of the console's graphs: a workflow's DAG from its definition (steps, dependencies,
conditions, fallback steps), the same DAG with each step's state on a workflow run, and a crew's
agents and tasks with their ``context`` links. Graphs are ``{nodes, edges}``; the page lays them
out (dagre) and draws them."""

from __future__ import annotations

from apps.console.sources import TERMINAL, workflow_model
from apps.crews.models import Crew
from apps.crews.specs import parse_crew
from apps.runs.models import Execution

ON_FAILURE = "__on_failure__"


def _step_node(step: dict, *, fallback: bool) -> dict:
    kind = step.get("type") or "agent"
    agent = step.get("agent_number") or step.get("agent_id") or ""
    return {
        "id": ("fallback:" if fallback else "") + step["id"],
        "step_id": step["id"],
        "kind": kind,
        "label": step.get("name") or step["id"],
        "fallback": fallback,
        "detail": (step.get("question") or step.get("message") or "")
        if kind == "approval"
        else (step.get("action") or "")[:160],
        "agent": f"#{agent}" if isinstance(agent, int) else str(agent)[:8],
        "condition": step.get("condition") or "",
        "state": None,
        "execution_id": None,
        "attempts": 0,
    }


def definition_graph(definition: dict) -> dict:
    """Nodes and edges of a workflow definition (what would run, no state)."""
    definition = definition if isinstance(definition, dict) else {}
    nodes, edges = [], []
    groups = [
        (definition.get("steps") or [], False),
        ((definition.get("error_handling") or {}).get("fallback_steps") or [], True),
    ]
    for steps, fallback in groups:
        steps = [s for s in steps if isinstance(s, dict) and s.get("id")]
        ids = {s["id"] for s in steps}
        prefix = "fallback:" if fallback else ""
        if fallback and steps:
            nodes.append(
                {
                    "id": ON_FAILURE,
                    "step_id": None,
                    "kind": "trigger",
                    "label": "on failure",
                    "fallback": True,
                    "detail": "error_handling.fallback_steps",
                    "agent": "",
                    "condition": "",
                    "state": None,
                    "execution_id": None,
                    "attempts": 0,
                }
            )
        for step in steps:
            nodes.append(_step_node(step, fallback=fallback))
            depends = [d for d in step.get("depends_on") or [] if d in ids]
            for dep in depends:
                edges.append(
                    {
                        "source": prefix + dep,
                        "target": prefix + step["id"],
                        "label": step.get("condition") or "",
                        "kind": "depends",
                    }
                )
            if fallback and not depends:
                edges.append({"source": ON_FAILURE, "target": prefix + step["id"], "label": "", "kind": "fallback"})
    return {"nodes": nodes, "edges": edges}


def workflow_graph(*, organization, pk) -> dict | None:
    Workflow = workflow_model("Workflow")
    if Workflow is None:
        return None
    rows = Workflow.objects.all() if organization is None else Workflow.objects.for_org(organization)
    workflow = rows.select_related("organization").filter(pk=pk).first()
    if workflow is None:
        return None
    runs = (
        workflow_model("WorkflowRun")
        .objects.filter(workflow=workflow)
        .select_related("execution")
        .order_by("-created_at")[:20]
    )
    return {
        "workflow": {
            "id": str(workflow.pk),
            "name": workflow.name,
            "version": workflow.version,
            "organization": workflow.organization.slug,
            "organization_id": workflow.organization_id,
            "description": workflow.description,
        },
        "graph": definition_graph(workflow.definition),
        "runs": [
            {
                "execution_id": str(r.execution_id),
                "status": r.execution.status,
                "version": r.version,
                "created_at": r.created_at,
                "trigger_type": r.trigger_type,
            }
            for r in runs
        ],
    }


def workflow_run_graph(*, execution) -> dict | None:
    """The DAG of the version a workflow run ran, each step coloured by its latest attempt's state
    (``pending`` before it started; ``not_run`` once the run ended without it). For a step's own
    run, the parent run's graph with that step marked."""
    WorkflowRun = workflow_model("WorkflowRun")
    current_step = None
    if execution.kind == "workflow_step" and execution.parent_id:
        StepRun = workflow_model("StepRun")
        step_run = StepRun.objects.filter(execution=execution).first()
        current_step = step_run.step_id if step_run else None
        run = (
            WorkflowRun.objects.select_related("workflow", "workflow_version", "execution")
            .filter(execution_id=execution.parent_id)
            .first()
        )
    elif execution.kind == "workflow":
        run = (
            WorkflowRun.objects.select_related("workflow", "workflow_version", "execution")
            .filter(execution=execution)
            .first()
        )
    else:
        return None
    if run is None:
        return None
    graph = definition_graph(run.workflow_version.definition)
    latest: dict = {}
    for step_run in workflow_model("StepRun").objects.filter(run=run).order_by("attempt", "created_at"):
        latest[(step_run.fallback, step_run.step_id)] = step_run
    ended = run.execution.status in TERMINAL
    for node in graph["nodes"]:
        if node["step_id"] is None:
            continue
        step_run = latest.get((node["fallback"], node["step_id"]))
        if step_run is None:
            node["state"] = "not_run" if ended else "pending"
            continue
        node["state"] = step_run.state
        node["attempts"] = step_run.attempt
        node["execution_id"] = str(step_run.execution_id) if step_run.execution_id else None
        node["error"] = (step_run.error or "")[:300]
        node["current"] = node["step_id"] == current_step and not node["fallback"]
    return {
        "workflow": {
            "id": str(run.workflow_id),
            "name": run.workflow.name,
            "version": run.version,
            "run_id": str(run.pk),
            "execution_id": str(run.execution_id),
            "phase": run.phase,
            "status": run.execution.status,
            "failed_step": run.failed_step,
        },
        "graph": graph,
    }


def _crew_nodes_and_edges(spec, process: str) -> tuple[list, list]:
    """Agent and task nodes; ``performs``, ``context`` and (sequential crews) ``next`` edges."""
    nodes = [
        {
            "id": f"agent:{a.key}",
            "kind": "agent",
            "label": a.role or a.key,
            "detail": a.goal[:160],
            "agent": a.key,
            "tools": list(a.tools),
        }
        for a in spec.agents
    ]
    edges = []
    previous = None
    for task in spec.tasks:
        nodes.append(
            {
                "id": f"task:{task.key}",
                "kind": "task",
                "label": task.key,
                "detail": task.description[:160],
                "agent": task.agent or "",
                "context": list(task.context),
            }
        )
        if task.agent:
            edges.append(
                {"source": f"agent:{task.agent}", "target": f"task:{task.key}", "kind": "performs", "label": ""}
            )
        for ref in task.context:
            edges.append({"source": f"task:{ref}", "target": f"task:{task.key}", "kind": "context", "label": "context"})
        if previous is not None and process == "sequential" and previous not in task.context:
            edges.append({"source": f"task:{previous}", "target": f"task:{task.key}", "kind": "next", "label": ""})
        previous = task.key
    return nodes, edges


def crew_graph(*, organization, pk) -> dict | None:
    """A crew's agents and tasks: ``performs`` edges from an agent to its tasks, ``context`` edges
    from a task to the tasks that read its output, ``next`` edges in the order a sequential crew runs."""
    rows = Crew.objects.all() if organization is None else Crew.objects.for_org(organization)
    crew = rows.select_related("organization").filter(pk=pk).first()
    if crew is None:
        return None
    spec = parse_crew(crew.agents_yaml, crew.tasks_yaml, crew.process)
    nodes, edges = _crew_nodes_and_edges(spec, crew.process)
    runs = (
        Execution.objects.filter(crew=crew)
        .order_by("-created_at")
        .values("id", "status", "created_at", "run_name")[:20]
    )
    return {
        "crew": {
            "id": str(crew.pk),
            "name": crew.name,
            "process": crew.process,
            "organization": crew.organization.slug,
            "organization_id": crew.organization_id,
            "errors": [e.message for e in spec.errors],
        },
        "graph": {"nodes": nodes, "edges": edges},
        "runs": [
            {
                "execution_id": str(r["id"]),
                "status": r["status"],
                "run_name": r["run_name"],
                "created_at": r["created_at"],
            }
            for r in runs
        ],
    }
