from django.apps import AppConfig

from apps.agents.crypto import SECRET_ROTATORS


class WebhooksConfig(AppConfig):
    name = "apps.webhooks"
    label = "webhooks"
    verbose_name = "Outbound webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # deferred: app registry — ready() runs once every app's models are loaded; apps.py loads before them
        from apps.events.services import add_publish_listener
        from apps.webhooks.models import WEBHOOK_EVENTS
        from apps.webhooks.services import on_event_published, webhooks_want

        add_publish_listener(on_event_published, types=WEBHOOK_EVENTS, wants=webhooks_want)
        # deferred: app registry — ready() runs once every app's models are loaded; apps.py loads before them
        from apps.webhooks.services import webhooks_rotate_secrets

        SECRET_ROTATORS["webhook secret(s)"] = webhooks_rotate_secrets
