from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "apps.audit"
    label = "audit"
    verbose_name = "Audit trail"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from apps.audit import services
        from kai_platform import ports

        ports.provide("audit_record", services.audit_record)
        ports.provide("audit_covered", services.audit_covered)
        ports.provide("snapshot", services.snapshot)
