from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save

from apps.runs.registry import provide


class SystemConfig(AppConfig):
    name = "apps.system"
    label = "system"
    verbose_name = "System management"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # deferred: app registry — ready() runs once every app's models are loaded; apps.py loads before them
        from apps.system import client_events  # noqa: F401 (registers its hub client events)
        from apps.system.models import Maintenance
        from apps.system.selectors import ensure_no_maintenance, forget_maintenance

        provide("runs_admission")(ensure_no_maintenance)
        post_save.connect(forget_maintenance, sender=Maintenance, dispatch_uid="system-maintenance-forget")
        post_delete.connect(forget_maintenance, sender=Maintenance, dispatch_uid="system-maintenance-forget-del")
