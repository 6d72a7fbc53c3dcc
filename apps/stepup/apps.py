from django.apps import AppConfig


class StepupConfig(AppConfig):
    name = "apps.stepup"
    label = "stepup"
    verbose_name = "Step-up authentication"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from apps.stepup.permissions import check_step_up
        from kai_platform import ports

        ports.provide("check_step_up", check_step_up)
