from django.apps import AppConfig


class CrewsConfig(AppConfig):
    name = "apps.crews"
    label = "crews"
    verbose_name = "Crews, orchestrations & runs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from apps.crews.runner import registry
        from kai_platform.drain import on_drain

        on_drain(registry.drain)  # SIGTERM: in-flight runs finish in the drain time or are requeued
