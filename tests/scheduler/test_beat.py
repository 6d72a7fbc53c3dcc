"""A schedule firing through REAL beat processes and a real worker (issue 8).

Two beat processes run side by side against one database, both sending ``scheduler.fire`` for
every tick of an every-minute schedule, until two whole minutes have ticked inside the window; the
worker must create exactly one execution per tick. A disabled schedule in the same database must
never fire.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.runs.models import Execution
from tests.helpers import BASE_DIR, WorkerProcess, subprocess_env

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# how long after the second whole minute of the window the beats keep running: its tick must have
# been sent by both (beat wakes at a due time; --max-interval 5 bounds a late wake-up)
AFTER_LAST_TICK_SECONDS = 10
# a tick this soon after both beats logged their start may find one still loading its schedule
STARTUP_MARGIN_SECONDS = 3


def _next_minute(moment):
    return moment.replace(second=0, microsecond=0) + timedelta(minutes=1)


class BeatProcess:
    def __init__(self, name: str, log_dir):
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "kai_platform",
                "beat",
                "--loglevel",
                "INFO",
                "--scheduler",
                "django_celery_beat.schedulers:DatabaseScheduler",
                "--pidfile=",
                "--max-interval",
                "5",
            ],
            cwd=BASE_DIR,
            env=subprocess_env(),
            start_new_session=True,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.name = name

    def sends(self, task_name: str) -> int:
        """How many times this beat sent ``task_name`` (celery beat logs each send at INFO)."""
        return self.log_path.read_text(errors="replace").count(f"Sending due task {task_name} ")

    def wait_started(self, timeout: float = 60) -> None:
        """Until this beat has logged its start (it loads the schedule right after)."""
        deadline = time.monotonic() + timeout
        while "beat: Starting..." not in self.log_path.read_text(errors="replace"):
            assert self.alive(), self.log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, f"{self.name} did not start in {timeout}s"
            time.sleep(0.2)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        finally:
            self._log.close()


def test_two_beats_fire_each_tick_exactly_once(make_schedule, member, tmp_path):
    from apps.scheduler.services import schedule_toggle

    every_minute = make_schedule(name="Every minute", cron_expression="* * * * *")
    disabled = make_schedule(name="Disabled", cron_expression="* * * * *")
    schedule_toggle(schedule=disabled, actor=member.user, enabled=False)

    worker = WorkerProcess()
    beats = []
    try:
        worker.wait_alive()
        launched = timezone.now()
        beats = [BeatProcess("beat-1", tmp_path), BeatProcess("beat-2", tmp_path)]
        for beat in beats:
            beat.wait_started()
        # the first whole minute both beats are surely scheduling for, and the one after it
        first_tick = _next_minute(timezone.now() + timedelta(seconds=STARTUP_MARGIN_SECONDS))
        second_tick = first_tick + timedelta(minutes=1)
        time.sleep(max(0.0, (second_tick - timezone.now()).total_seconds() + AFTER_LAST_TICK_SECONDS))
        assert all(b.alive() for b in beats), "a beat process died"
        for beat in beats:
            beat.stop()
        stopped = timezone.now()
        time.sleep(5)  # let the worker finish the last tick's fire tasks
    finally:
        for beat in beats:
            beat.stop()
        worker.stop()

    from apps.events.models import Event
    from apps.scheduler.services import periodic_task_name

    fired = list(
        Execution.objects.filter(dedupe_key__startswith=f"schedule:{every_minute.pk}:").values_list(
            "dedupe_key", flat=True
        )
    )
    # both beats really sent every tick, so the worker got each tick at least twice ...
    sends = [beat.sends(periodic_task_name(every_minute)) for beat in beats]
    assert all(n >= 2 for n in sends), f"each beat should have sent the tick task: {sends}"
    assert sum(sends) > len(fired), (sends, fired)
    # ... and it ran once per tick: one fired event per execution, no error events
    events = Event.objects.filter(data__schedule_id=str(every_minute.pk))
    assert events.filter(type="schedule.fired").count() == len(fired)
    assert not events.filter(type="schedule.failed").exists()
    got = sorted(key.split(":", 2)[2] for key in fired)
    fmt = "%Y-%m-%dT%H:%M:00Z"
    # every whole minute from the first both beats were up for was sent by both and ran once
    expected, minute = [], first_tick
    while minute + timedelta(seconds=3) < stopped:
        expected.append(minute.strftime(fmt))
        minute += timedelta(minutes=1)
    assert len(expected) >= 2 and set(expected) <= set(got), (expected, got)
    # and nothing outside the beats' lifetime: from the minute they were launched in (beat may
    # send its latest tick on start-up) to the minute they were stopped in
    window, minute = set(), launched.replace(second=0, microsecond=0)
    while minute <= stopped:
        window.add(minute.strftime(fmt))
        minute += timedelta(minutes=1)
    assert set(got) <= window, (sorted(window), got)
    assert not Execution.objects.filter(dedupe_key__startswith=f"schedule:{disabled.pk}:").exists()
    every_minute.refresh_from_db()
    assert every_minute.last_execution_id is not None and every_minute.last_tick_at is not None
