"""Create the demo organization and the admin user (idempotent).

The admin's email is ``KAI_ADMIN_EMAIL`` (default admin@kai.local); the password is
``KAI_ADMIN_PASSWORD`` when set (and then re-applied on every run), otherwise generated on first
creation and printed once. ``--migrate`` applies the migrations first, in the same process (what
``kai up`` runs at every start: one Django start-up instead of two).
"""

import os
import secrets

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction

from apps.accounts import services
from apps.accounts.models import Membership, Organization, User
from kai_platform.tenancy.roles import Role

DEMO_SLUG = "demo"


class Command(BaseCommand):
    help = "Create the demo organization and admin user if they do not exist."

    def add_arguments(self, parser):
        parser.add_argument("--migrate", action="store_true", help="apply the migrations first")

    def handle(self, *args, **options):
        if options["migrate"]:
            call_command("migrate", interactive=False, verbosity=0)
        email = os.environ.get("KAI_ADMIN_EMAIL", "admin@kai.local").lower()
        given_password = os.environ.get("KAI_ADMIN_PASSWORD")
        with transaction.atomic():
            user = User.objects.filter(email__iexact=email).first()
            generated = None
            if user is None:
                password = given_password or (generated := secrets.token_urlsafe(12))
                user = User.objects.create_superuser(email=email, password=password, full_name="Platform admin")
            elif given_password:
                user.set_password(given_password)
                user.save(update_fields=["password"])
            organization = Organization.objects.filter(slug=DEMO_SLUG).first()
            if organization is None:
                organization = services.organization_create(name="Demo", owner=user, slug=DEMO_SLUG)
            elif not Membership.objects.filter(user=user, organization=organization).exists():
                services.membership_add(organization=organization, user=user, role=Role.OWNER, actor=user)
        self.stdout.write(f"[kai] demo organization: {organization.slug} ({organization.pk})")
        if generated:
            self.stdout.write(
                f"[kai] admin user created: {email} / {generated}   (shown once; set KAI_ADMIN_PASSWORD to choose it)"
            )
        else:
            self.stdout.write(
                f"[kai] admin user: {email}" + (" (password from KAI_ADMIN_PASSWORD)" if given_password else "")
            )
