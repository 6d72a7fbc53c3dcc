from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class QuotasConfig(AppConfig):
    name = "apps.quotas"
    label = "quotas"
    verbose_name = "Plan quotas"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # deferred: app registry — ready() runs once every app's models are loaded; apps.py loads before them
        from apps.accounts.models import Organization
        from apps.quotas import signals
        from apps.quotas.models import QuotaOverride, QuotaPlan

        post_save.connect(signals.forget_all, sender=QuotaPlan, dispatch_uid="quotas.plan.save")
        post_delete.connect(signals.forget_all, sender=QuotaPlan, dispatch_uid="quotas.plan.delete")
        post_save.connect(signals.forget_organization, sender=QuotaOverride, dispatch_uid="quotas.override.save")
        post_delete.connect(signals.forget_organization, sender=QuotaOverride, dispatch_uid="quotas.override.delete")
        post_save.connect(signals.forget_organization, sender=Organization, dispatch_uid="quotas.org.save")
