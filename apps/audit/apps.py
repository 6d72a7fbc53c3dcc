from django.apps import AppConfig

from kai_platform import ports


class AuditConfig(AppConfig):
    name = "apps.audit"
    label = "audit"
    verbose_name = "Audit trail"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # deferred: app registry — ready() runs once every app's models are loaded; apps.py loads before them
        from apps.audit import services

        ports.provide("audit_record", services.audit_record)
        ports.provide("audit_covered", services.audit_covered)
        ports.provide("snapshot", services.snapshot)
