from celery.signals import worker_init
from django.apps import AppConfig
from django.conf import settings

from apps.events.seed_payloads import register_execution_summary
from apps.runs.inflight import registry
from kai_platform.drain import on_drain
from kai_platform.llm import preload_clients


class RunsConfig(AppConfig):
    name = "apps.runs"
    label = "runs"
    verbose_name = "Runs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # deferred: app registry — ready() runs once every app's models are loaded; apps.py loads before them
        from apps.quotas.selectors import register_row_source

        # deferred: app registry — ready() runs once every app's models are loaded; apps.py loads before them
        from apps.runs.selectors import execution_summary, executions_created_since

        register_row_source("executions", executions_created_since)
        register_execution_summary(execution_summary)  # the seed run events read their execution
        # workers run the model calls
        worker_init.connect(lambda **kwargs: preload_clients(settings.KAI_PRELOAD_SDKS), weak=False)
        on_drain(registry.drain)  # SIGTERM: in-flight runs finish in the drain time or are requeued
