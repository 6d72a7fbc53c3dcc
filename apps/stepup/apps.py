from django.apps import AppConfig

from kai_platform import ports


class StepupConfig(AppConfig):
    name = "apps.stepup"
    label = "stepup"
    verbose_name = "Step-up authentication"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # deferred: app registry — ready() runs once every app's models are loaded; apps.py loads before them
        from apps.stepup.permissions import check_step_up

        ports.provide("check_step_up", check_step_up)
