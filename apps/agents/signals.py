"""Every new organization gets the builtin provider, the built-in tools and the official templates."""

from django.db.models.signals import post_save
from django.dispatch import receiver

from apps.accounts.models import Organization
from apps.agents.services import organization_install_builtins


@receiver(post_save, sender=Organization, dispatch_uid="agents.install_builtins")
def install_builtins(sender, instance, created, raw=False, **kwargs):
    if created and not raw:
        organization_install_builtins(organization=instance)
