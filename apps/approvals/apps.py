from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "apps.approvals"
    label = "approvals"
    verbose_name = "Approvals"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from apps.approvals.services import on_event_published
        from apps.events.services import add_publish_listener

        add_publish_listener(on_event_published)
