"""Give every organization (or one, by slug) the builtin provider, built-in tools and official
templates. Idempotent; new organizations get them on creation."""

from django.core.management.base import BaseCommand

from apps.accounts.models import Organization
from apps.agents import services


class Command(BaseCommand):
    help = "Install the builtin provider, built-in tools and official templates into organizations."

    def add_arguments(self, parser):
        parser.add_argument("--organization", help="slug; default: every organization")

    def handle(self, *args, **options):
        organizations = Organization.objects.all()
        if options.get("organization"):
            organizations = organizations.filter(slug=options["organization"])
        for organization in organizations.iterator():
            created = services.organization_install_builtins(organization=organization)
            self.stdout.write(f"[kai] {organization.slug}: " + ", ".join(f"{k} +{v}" for k, v in created.items()))
