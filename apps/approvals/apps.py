from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "apps.approvals"
    label = "approvals"
    verbose_name = "Approvals"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from apps.approvals.services import RUN_END_EVENTS, approval_request_for_execution, on_event_published
        from apps.events.services import add_publish_listener
        from apps.runs.registry import provide

        provide("approval_park")(lambda execution, request, checkpoint: approval_request_for_execution(
            execution=execution, request=request, checkpoint=checkpoint))

        # declared types: a run's claim (no such event) then commits in one round trip (apps.runs)
        add_publish_listener(on_event_published, types=RUN_END_EVENTS)
