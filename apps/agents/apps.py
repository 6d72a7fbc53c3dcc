from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "apps.agents"
    label = "agents"
    verbose_name = "Agents, providers, secrets & tools"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from apps.agents import signals  # noqa: F401
