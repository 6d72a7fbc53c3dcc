from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "apps.console"
    label = "console"
    verbose_name = "Operator console"
    default_auto_field = "django.db.models.BigAutoField"
