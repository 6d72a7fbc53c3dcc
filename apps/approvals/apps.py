from django.apps import AppConfig

from apps.runs.registry import provide


class ApprovalsConfig(AppConfig):
    name = "apps.approvals"
    label = "approvals"
    verbose_name = "Approvals"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # deferred: app registry — ready() runs once every app's models are loaded; apps.py loads before them
        from apps.approvals.services import RUN_END_EVENTS, approval_request_for_execution, on_event_published
        from apps.events.services import add_publish_listener

        provide("approval_park")(
            lambda execution, request, checkpoint: approval_request_for_execution(
                execution=execution, request=request, checkpoint=checkpoint
            )
        )

        # declared types: a run's claim (no such event) then commits in one round trip (apps.runs)
        add_publish_listener(on_event_published, types=RUN_END_EVENTS)
