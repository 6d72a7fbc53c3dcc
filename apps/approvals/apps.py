from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "apps.approvals"
    label = "approvals"
    verbose_name = "Approvals"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from apps.approvals.services import RUN_END_EVENTS, on_event_published
        from apps.events.services import add_publish_listener

        # declared types: a run's claim (no such event) then commits in one round trip (apps.crews)
        add_publish_listener(on_event_published, types=RUN_END_EVENTS)
