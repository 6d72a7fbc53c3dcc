"""The run engine's Celery tasks: the runs.* names and the names they had under apps.crews are
both routed to the runs queue, and the runs worker as ``make run`` starts it (``-Q <prefix>.runs``,
threads pool) runs a message queued under either name."""

import pytest
from django.conf import settings

from apps.runs.models import ExecutionKind
from apps.runs.services import execution_create
from apps.runs.tasks import LEGACY_NAMES
from kai_platform.celery import app
from kai_platform.cli import runs_worker_command
from tests.crews.conftest import make_agent, wait_for
from tests.helpers import WorkerProcess

pytestmark = pytest.mark.django_db(transaction=True)


def test_old_and_new_task_names_route_to_the_runs_queue():
    router = app.amqp.router
    for name in ("runs.run_execution", "apps.crews.tasks.run_execution"):
        assert router.route({}, name)["queue"].name == settings.KAI_RUNS_QUEUE
    assert set(LEGACY_NAMES.values()) <= set(app.tasks)  # still registered: queued messages find them
    assert settings.CELERY_BEAT_SCHEDULE["crews-reap-stale-executions"]["task"] == "runs.reap_stale_executions"


def test_the_runs_worker_runs_messages_queued_under_either_name(member):
    from apps.runs.models import Execution

    args = runs_worker_command()
    assert args[args.index("-Q") + 1].endswith(".runs") and args[args.index("--pool") + 1] == "threads"
    worker = WorkerProcess("-Q", settings.KAI_RUNS_QUEUE)  # the queue make run's runs worker consumes
    try:
        worker.wait_alive()
        agent = make_agent(member)
        runs = []
        for name in ("runs.run_execution", "apps.crews.tasks.run_execution"):
            execution = execution_create(
                organization=member.organization,
                actor=member.user,
                agent=agent,
                kind=ExecutionKind.AGENT_PROMPT,
                definition={"prompt": "hi"},
                enqueue=False,
            )
            app.send_task(name, args=[str(execution.pk)], queue=settings.KAI_RUNS_QUEUE)
            runs.append(execution.pk)
        wait_for(lambda: Execution.objects.filter(pk__in=runs, status="COMPLETED").count() == 2, 30)
    finally:
        worker.stop()
