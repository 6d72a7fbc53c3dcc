"""``manage.py rotate_webhook_secrets``: re-encrypt webhook signing secrets under the newest key
(run after ``rotate_secrets`` when a key was added to KAI_SECRET_KEYS)."""

from django.core.management.base import BaseCommand

from apps.webhooks.services import webhooks_rotate_secrets


class Command(BaseCommand):
    help = "Re-encrypt every webhook secret under the newest KAI_SECRET_KEYS key."

    def handle(self, *args, **options):
        self.stdout.write(f"rotated {webhooks_rotate_secrets()} webhook secret(s)")
