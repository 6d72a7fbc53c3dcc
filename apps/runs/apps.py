from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "apps.runs"
    label = "runs"
    verbose_name = "Runs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from celery.signals import worker_init

        from apps.events.seed_payloads import register_execution_summary
        from apps.quotas.selectors import register_row_source
        from apps.runs.inflight import registry
        from apps.runs.selectors import execution_summary, executions_created_since
        from kai_platform.drain import on_drain
        from kai_platform.llm import preload_clients

        register_row_source("executions", executions_created_since)
        register_execution_summary(execution_summary)  # the seed run events read their execution
        worker_init.connect(lambda **kwargs: preload_clients(), weak=False)  # workers run the model calls
        on_drain(registry.drain)  # SIGTERM: in-flight runs finish in the drain time or are requeued
