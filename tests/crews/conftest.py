"""Fixtures of the run-engine tests: crews and agents to run, and a real worker (and beat) on the
runs queue."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from django.conf import settings

from tests.helpers import BASE_DIR, subprocess_env

AGENTS_YAML = """\
researcher:
  role: "{topic} Senior Researcher"
  goal: Uncover developments in {topic}
  backstory: A seasoned researcher who digs deep.
analyst:
  role: Data Analyst
  goal: Turn findings into insight
  backstory: A careful analyst.
writer:
  role: Technical Writer
  goal: Write clear reports
  backstory: A former journalist.
"""

TASKS_YAML = """\
research_task:
  description: Research the latest on {topic}
  expected_output: Five bullet points
  agent: researcher
analysis_task:
  description: Analyse the findings
  expected_output: Three insights
  agent: analyst
report_task:
  description: Write the report
  expected_output: A short report
  agent: writer
  context: [research_task, analysis_task]
"""


def queues() -> str:
    return f"{settings.CELERY_TASK_DEFAULT_QUEUE},{settings.KAI_REDIS_PREFIX}.runs"


def make_agent(member, **data):
    from apps.agents.services import agent_create

    values = {"name": "Agent", "role": "Helper", "goal": "Help", "backstory": "Helpful."}
    values.update(data)
    return agent_create(organization=member.organization, actor=member.user, data=values)


def make_crew(member, **data):
    from apps.crews.services import crew_create

    values = {"name": "Research Team", "agents_yaml": AGENTS_YAML, "tasks_yaml": TASKS_YAML}
    values.update(data)
    return crew_create(organization=member.organization, actor=member.user, data=values)


def wait_for(predicate, timeout: float, interval: float = 0.1, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


@pytest.fixture
def runs_worker(celery_worker_process):
    """A real Celery worker (threads pool) consuming the default and the runs queues: the shared one."""
    return celery_worker_process


class BeatProcess:
    def __init__(self, tmp_path, **env):
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "kai_platform",
                "beat",
                "--loglevel",
                "WARNING",
                "--scheduler",
                "django_celery_beat.schedulers:DatabaseScheduler",
                "--pidfile=",
                "-s",
                str(tmp_path / "beat-schedule"),
            ],
            cwd=BASE_DIR,
            env=subprocess_env(**env),
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self):
        import os
        import signal

        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def beat_process(transactional_db, tmp_path):
    beat = BeatProcess(tmp_path)
    try:
        yield beat
    finally:
        beat.stop()
