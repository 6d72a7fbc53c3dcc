from django.apps import AppConfig


class VoiceConfig(AppConfig):
    name = "apps.voice"
    label = "voice"
    verbose_name = "Voice"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # deferred: app registry — ready() runs once every app's models are loaded; apps.py loads before them
        from apps.voice import client_events  # noqa: F401 (registers its hub client events)
