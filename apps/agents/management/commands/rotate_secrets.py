"""Re-encrypt every stored secret under the newest key of KAI_SECRET_KEYS: provider and tool
credentials, outbound webhook signing secrets, workflow webhook secrets and SSO client secrets.

Rotation: put a new key first in KAI_SECRET_KEYS (keep the old ones after it), restart, run this
command, then drop the old keys. Exits non-zero if any value decrypts under no configured key.
"""

from django.core.management.base import BaseCommand, CommandError

from apps.agents import crypto, services


class Command(BaseCommand):
    help = "Re-encrypt every stored secret (credentials, webhook and workflow secrets) under the newest key."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args, **options):
        result = services.credentials_rotate_all(batch_size=options["batch_size"])
        self.stdout.write(f"[kai] rotated {result['rotated']} credential(s) to key {result['key_id']}")
        for what, rotate in crypto.SECRET_ROTATORS.items():  # other apps' secrets (registered in their ready)
            self.stdout.write(f"[kai] rotated {rotate()} {what}")
        if result["unreadable"]:
            raise CommandError(f"{result['unreadable']} credential(s) decrypt under no configured key (see the log)")
