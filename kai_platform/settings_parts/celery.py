"""Celery: the broker, the default and runs queues, and beat's schedule of every app's periodic tasks."""

from __future__ import annotations

from kombu import Queue

from kai_platform.env import env_int, env_str
from kai_platform.settings_parts.services import KAI_REDIS_PREFIX, REDIS_URL


def _celery_broker_url(redis_url: str) -> str:
    if redis_url.startswith("unix://"):
        path, _, query = redis_url[len("unix://") :].partition("?")
        db = dict(part.split("=", 1) for part in query.split("&") if "=" in part).get("db", "0")
        return f"redis+socket://{path}?virtual_host={db}"
    return redis_url


CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", _celery_broker_url(REDIS_URL))
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = f"{KAI_REDIS_PREFIX}.default"
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "global_keyprefix": f"{KAI_REDIS_PREFIX}:celery:",
    "visibility_timeout": 3600,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
KAI_WORKER_HEARTBEAT_SECONDS = env_int("KAI_WORKER_HEARTBEAT_SECONDS", 5)


#: runs (I/O-bound, threads pool, high concurrency) have their own queue beside the default one;
#: a worker started without -Q consumes both (CELERY_TASK_QUEUES lists them).
KAI_RUNS_QUEUE = f"{KAI_REDIS_PREFIX}.runs"
CELERY_TASK_QUEUES = (
    Queue(CELERY_TASK_DEFAULT_QUEUE, routing_key=CELERY_TASK_DEFAULT_QUEUE),
    Queue(KAI_RUNS_QUEUE, routing_key=KAI_RUNS_QUEUE),
)  # own keys: no message lands in both
CELERY_TASK_ROUTES = {
    "runs.run_execution": {"queue": KAI_RUNS_QUEUE},
    "apps.crews.tasks.run_execution": {"queue": KAI_RUNS_QUEUE},  # its name before apps.runs
}
CELERY_BEAT_SCHEDULE = {
    "crews-reap-stale-executions": {
        "task": "runs.reap_stale_executions",
        "schedule": float(env_int("KAI_REAPER_SECONDS", 5)),
        "options": {"queue": CELERY_TASK_DEFAULT_QUEUE, "expires": 30},
    },
    "workflows-sweep": {  # advance workflow runs that are due or lost an advance message
        "task": "workflows.sweep",
        "schedule": float(env_int("KAI_WORKFLOW_SWEEP_SECONDS", 10)),
        "options": {"queue": CELERY_TASK_DEFAULT_QUEUE, "expires": 30},
    },
    "retention-prune": {  # apps.retention: each organization's data past its policy, in batches
        "task": "apps.retention.tasks.prune_all",
        "schedule": float(env_int("KAI_RETENTION_SECONDS", 3600)),
        "options": {"queue": CELERY_TASK_DEFAULT_QUEUE, "expires": 600},
    },
}
#: system (apps.system): metric rollups and the status broadcast
CELERY_BEAT_SCHEDULE.update(
    {
        "system-rollup-metrics": {
            "task": "apps.system.tasks.rollup_metrics",
            "schedule": float(env_int("KAI_METRIC_ROLLUP_SECONDS", 60)),
            "options": {"queue": CELERY_TASK_DEFAULT_QUEUE, "expires": 120},
        },
        "system-publish-status": {
            "task": "apps.system.tasks.publish_system_status",
            "schedule": float(env_int("KAI_SYSTEM_STATUS_SECONDS", 30)),
            "options": {"queue": CELERY_TASK_DEFAULT_QUEUE, "expires": 60},
        },
    }
)
#: pending approvals past their deadline get their default at least this often (eta'd tasks do it on time)
CELERY_BEAT_SCHEDULE["approvals-expire-due"] = {
    "task": "apps.approvals.tasks.expire_due_approvals",
    "schedule": float(env_int("KAI_APPROVAL_SWEEP_SECONDS", 30)),
    "options": {"queue": CELERY_TASK_DEFAULT_QUEUE, "expires": 60},
}
#: webhook deliveries whose retry fell due (their countdown message lost)
CELERY_BEAT_SCHEDULE["webhooks-requeue-due"] = {
    "task": "apps.webhooks.tasks.requeue_due_deliveries",
    "schedule": float(env_int("KAI_WEBHOOK_SWEEP_SECONDS", 60)),
    "options": {"queue": CELERY_TASK_DEFAULT_QUEUE, "expires": 120},
}
