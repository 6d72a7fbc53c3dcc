from django.apps import AppConfig


class StepupConfig(AppConfig):
    name = "apps.stepup"
    label = "stepup"
    verbose_name = "Step-up authentication"
    default_auto_field = "django.db.models.BigAutoField"
