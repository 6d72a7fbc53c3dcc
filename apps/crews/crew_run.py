"""One crew run in CrewAI's run model: tasks in order (``async_execution`` ones on threads, awaited
by the tasks whose context names them), each with its structured output, guardrail, limits,
coworker tools, output file and callback; the hierarchical process gives every task to a manager;
``planning`` adds a plan to every task. ``runners.run_crew`` builds one and calls ``run``."""

from __future__ import annotations

import json
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypedDict

from django.db import connection

from apps.crews import delegation, guardrails, outputs, structured
from apps.crews.knowledge import knowledge_tools
from apps.crews.limits import Deadline, RateLimiter
from apps.crews.specs import CrewSpec
from apps.runs.prompts import interpolate, task_prompt
from apps.runs.recorder import Span
from apps.runs.runner import (
    AgentProfile,
    AwaitingApproval,
    Cancelled,
    RunContext,
    RunFailed,
    StepOptions,
    StepResult,
)
from apps.webhooks.selectors import webhook_by_reference

MARKDOWN = (
    "Your final answer MUST be formatted in Markdown syntax: use # or ## for headers, "
    "**text** for bold, *text* for italic, - or * for lists, and ``` for code blocks."
)


class Persona(TypedDict):
    key: str
    name: str
    role: str
    goal: str
    backstory: str


MANAGER = Persona(
    key="manager",
    name="Crew Manager",
    role="Crew Manager",
    goal="Manage the team to complete the tasks in the best way possible",
    backstory="You are a seasoned manager with a knack for getting the best out of your team. You "
    "delegate each task to the right coworker and check their work.",
)


@dataclass
class TaskOutcome:
    key: str
    agent: str
    raw: str
    json_output: object = None
    file: dict | None = None
    attempts: int = 1

    def context_text(self) -> str:
        return json.dumps(self.json_output, ensure_ascii=False) if self.json_output is not None else self.raw

    def as_dict(self) -> dict:
        return {
            "task": self.key,
            "agent": self.agent,
            "raw": self.raw,
            "json_output": self.json_output,
            **({"output_file": self.file} if self.file else {}),
            "attempts": self.attempts,
        }


@dataclass
class CrewSettings:
    process: str = "sequential"
    planning: bool = False
    planning_llm: str = ""
    manager_llm: str = ""
    manager_agent: str = ""
    max_rpm: int | None = None

    @classmethod
    def of(cls, spec, definition: dict) -> CrewSettings:
        raw_config = definition.get("config")
        config = raw_config if isinstance(raw_config, dict) else {}
        merged = {**config, **{k: v for k, v in definition.items() if k in cls.__dataclass_fields__}}
        for name in cls.__dataclass_fields__:  # the parsed crew (crewspec) wins over raw settings
            value = getattr(spec, name, None)
            if value not in (None, ""):
                merged[name] = value
        manager = merged.get("manager_agent")
        return cls(
            process=str(merged.get("process") or "sequential"),
            planning=bool(merged.get("planning")),
            planning_llm=_model_name(merged.get("planning_llm")),
            manager_llm=_model_name(merged.get("manager_llm")),
            manager_agent=str(getattr(manager, "key", manager) or ""),
            max_rpm=int(merged["max_rpm"]) if merged.get("max_rpm") else None,
        )


def _model_name(value) -> str:
    return str(value.get("model") or "") if isinstance(value, dict) else str(value or "")


@dataclass
class CrewRun:
    ctx: RunContext
    spec: CrewSpec
    profiles: dict[str, AgentProfile]
    settings: CrewSettings
    inputs: dict
    outcomes: dict[str, TaskOutcome] = field(default_factory=dict)
    plan: str = ""
    root: Span | None = None  # the crew's span, the parent of its steps (set as the run starts)

    def __post_init__(self):
        self.agent_specs = {a.key: a for a in self.spec.agents}
        self.limiters = {a.key: RateLimiter(a.max_rpm) for a in self.spec.agents if a.max_rpm}
        self.crew_limiter = RateLimiter(self.settings.max_rpm) if self.settings.max_rpm else None
        self.futures: dict[str, Future] = {}
        self.pool: ThreadPoolExecutor | None = None
        self.failed = threading.Event()
        self.schemas = {t.key: structured.task_schema(self.ctx.organization, t) for t in self.spec.tasks}
        self.checks = {t.key: self._guardrail(t) for t in self.spec.tasks}
        self.manager = self._manager()

    # --- set-up: everything a task names is checked before the first model call ---------------
    def _guardrail(self, task):
        text = (getattr(task, "guardrail", None) or "").strip()
        if not text:
            return None
        if guardrails.is_builtin(text):
            return guardrails.builtin_check(text, self.ctx.organization)
        return lambda answer, task=task: self._judge(task, text, answer)

    def _manager(self) -> AgentProfile | None:
        if self.settings.process != "hierarchical":
            return None
        key = self.settings.manager_agent
        if key:
            if key not in self.profiles:
                raise RunFailed(
                    f"manager_agent {key!r} is not an agent of the crew (agents: {', '.join(self.profiles)})",
                    type="crew_config",
                )
            return self.profiles[key]
        return AgentProfile(**MANAGER, model=self.settings.manager_llm or self.ctx.default_model)

    def check_callbacks(self) -> None:
        for task in self.spec.tasks:
            reference = getattr(task, "callback", None)
            if reference and webhook_by_reference(organization=self.ctx.organization, reference=reference) is None:
                raise RunFailed(
                    f"task {task.key!r}: callback names webhook {reference!r}, which the organization "
                    "does not have (or is inactive)",
                    type="callback",
                )

    # --- options of one agent's step ------------------------------------------------------------
    def stop_check(self) -> None:
        self.ctx.check_cancel()
        if self.failed.is_set():
            raise Cancelled("another task of the crew failed")

    def options(
        self,
        profile: AgentProfile,
        deadline: Deadline,
        params: dict | None = None,
        coworkers: list[AgentProfile] | None = None,
    ) -> StepOptions:
        agent = self.agent_specs.get(profile.key)
        limiter = self.limiters.get(profile.key)

        def before_call():
            self.stop_check()
            deadline.check()
            for gate in (limiter, self.crew_limiter):
                if gate is not None:
                    waited = gate.acquire(self.stop_check)
                    if waited:
                        self.ctx.recorder.log(
                            f"{profile.role} waited {waited:.1f} s for its max_rpm", level="info", agent=profile.key
                        )
            deadline.check()

        max_iter = getattr(agent, "max_iter", None) if agent else None
        options = StepOptions(params=params or {}, before_call=before_call)
        if max_iter is not None:
            options.max_rounds = int(max_iter)
        if coworkers:
            options.local_tools = delegation.coworker_tools(coworkers, self._coworker_work)
        sources = [*getattr(agent, "knowledge_sources", []), *self.spec.crew_knowledge_sources]
        if sources:
            options.local_tools = {
                **options.local_tools,
                **knowledge_tools(self.ctx, profile.key, list(dict.fromkeys(sources))),
            }
        return options

    def _coworker_work(self, coworker: AgentProfile, prompt: str) -> str:
        deadline = Deadline(
            getattr(self.agent_specs.get(coworker.key), "max_execution_time", None), f"agent {coworker.key!r}"
        )
        result = self.ctx.agent_step(
            profile=coworker,
            prompt=prompt,
            parent=self.root,
            label="delegated work",
            options=self.options(coworker, deadline),
        )
        deadline.check()
        return result.text

    def coworkers_of(self, profile: AgentProfile) -> list[AgentProfile]:
        if profile is self.manager:
            return [p for p in self.profiles.values() if p is not self.manager]
        agent = self.agent_specs.get(profile.key)
        if agent is None or not getattr(agent, "allow_delegation", False):
            return []
        return [p for p in self.profiles.values() if p.key != profile.key and p is not self.manager]

    # --- one task ----------------------------------------------------------------------------------
    def prompt_of(self, task, context: list[tuple[str, str]]) -> str:
        description = interpolate(task.description, self.inputs)
        if self.plan:
            description += f"\n\nThe crew's plan for this task:\n{self.plan}"
        prompt = task_prompt(description, interpolate(task.expected_output, self.inputs), context)
        if getattr(task, "markdown", False):
            prompt += "\n\n" + MARKDOWN
        schema = self.schemas.get(task.key)
        if schema is not None:
            prompt += "\n\n" + schema.instructions()
        return prompt

    def execute(
        self, task, profile: AgentProfile, context: list[tuple[str, str]], resume: dict | None = None
    ) -> TaskOutcome:
        """Run the task until its answer passes its schema and guardrail (retried with the feedback
        up to ``guardrail_max_retries``), then file it and call back."""
        prompt = self.prompt_of(task, context)
        schema = self.schemas.get(task.key)
        retries = int(
            getattr(task, "guardrail_max_retries", 3) if getattr(task, "guardrail_max_retries", None) is not None else 3
        )
        attempt, current = 0, prompt
        while True:
            attempt += 1
            result = self._attempt(task, profile, current, schema, resume if attempt == 1 else None, attempt)
            value, feedback, what = self._verdict(task, schema, result.text)
            if feedback is None:
                break
            self.ctx.recorder.log(
                f"task {task.key}: {what} refused attempt {attempt}: {feedback}",
                level="warning",
                task=task.key,
                attempt=attempt,
            )
            if attempt > retries:
                raise RunFailed(
                    f"task {task.key!r} failed its {what} after {attempt} attempts; last feedback: {feedback}",
                    type="guardrail",
                    task=task.key,
                    guardrail=what,
                    feedback=feedback,
                )
            current = guardrails.retry_prompt(prompt, result.text, feedback, attempt)
        outcome = TaskOutcome(task.key, profile.key, result.text, value, attempts=attempt)
        self.finish(task, outcome)
        return outcome

    def _attempt(self, task, profile, prompt, schema, resume, attempt) -> StepResult:
        agent = self.agent_specs.get(profile.key)
        deadline = Deadline(getattr(agent, "max_execution_time", None) if agent else None, f"agent {profile.key!r}")
        options = self.options(
            profile, deadline, schema.response_format() if schema else None, self.coworkers_of(profile)
        )
        name = task.key if attempt == 1 else f"{task.key} (attempt {attempt})"
        result = self.ctx.task_step(
            name=name,
            profile=profile,
            prompt=prompt,
            parent=self.root,
            agent_key=profile.key,
            resume=resume,
            options=options,
        )
        deadline.check()
        return result

    def _verdict(self, task, schema, text: str) -> tuple[object, str | None, str]:
        """(JSON value, feedback when refused, what refused it)."""
        value = None
        if schema is not None:
            value, errors = structured.check(schema, text)
            if errors:
                return (
                    None,
                    "the answer does not match the JSON Schema: " + "; ".join(errors),
                    f"output schema {schema.name}",
                )
        check = self.checks.get(task.key)
        if check is not None:
            verdict = check(text)
            if not verdict.ok:
                return value, verdict.feedback or "no feedback given", f"guardrail {task.guardrail!r}"
        return value, None, ""

    def _judge(self, task, guardrail: str, answer: str) -> guardrails.Verdict:
        judge = AgentProfile(
            key="guardrail",
            name="Guardrail",
            role="Guardrail judge",
            goal="Check task answers against a requirement",
            model=self.settings.manager_llm or self.ctx.default_model,
        )
        prompt = guardrails.judge_prompt(guardrail, interpolate(task.description, self.inputs), answer)
        options = StepOptions(
            params={"response_format": {"name": "guardrail_verdict", "schema": guardrails.JUDGE_SCHEMA}},
            before_call=self.stop_check,
            max_rounds=0,
        )
        result = self.ctx.agent_step(
            profile=judge, prompt=prompt, parent=self.root, label=f"guardrail of {task.key}", options=options
        )
        return guardrails.judge_verdict(result.text)

    def finish(self, task, outcome: TaskOutcome) -> None:
        path = getattr(task, "output_file", None)
        if path:
            content = outcome.context_text() if outcome.json_output is not None else outcome.raw
            outcome.file = outputs.store_output_file(
                self.ctx,
                task.key,
                interpolate(path, self.inputs),
                content,
                create_directory=getattr(task, "create_directory", True),
            )
        if getattr(task, "callback", None):
            outputs.send_callback(self.ctx, task.callback, outcome.as_dict())
        if not connection.in_atomic_block:
            connection.close()

    # --- async tasks --------------------------------------------------------------------------------
    def submit(self, task, profile, context) -> None:
        if self.pool is None:
            self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="kai-crew-async")
        self.ctx.recorder.log(f"task {task.key} started asynchronously", task=task.key)
        self.futures[task.key] = self.pool.submit(self._in_thread, task, profile, context)

    def _in_thread(self, task, profile, context) -> TaskOutcome:
        try:
            return self.execute(task, profile, context)
        except AwaitingApproval as exc:
            self.failed.set()
            raise RunFailed(
                f"task {task.key!r} asked for an approval ({exc}); approvals are not supported in async_execution tasks"
            ) from None
        except BaseException:
            self.failed.set()
            raise
        finally:
            connection.close()

    def outcome(self, key: str) -> TaskOutcome | None:
        """The task's outcome, waiting for it when it runs asynchronously."""
        future = self.futures.pop(key, None)
        if future is not None:
            self.outcomes[key] = future.result()
        return self.outcomes.get(key)

    def join(self) -> None:
        """Wait for every async task; the first failure (not a sibling's resulting stop) is raised."""
        errors = []
        for key in list(self.futures):
            try:
                self.outcome(key)
            except (Cancelled, RunFailed) as exc:
                errors.append(exc)
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        if errors:
            raise next((e for e in errors if isinstance(e, RunFailed)), errors[0])
