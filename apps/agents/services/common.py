"""What the agents app's writes share: per-organization advisory locks and the key alphabet."""

from __future__ import annotations

import string
import uuid

from django.db import connection

LOCK_NAMESPACE = 0x6B42  # advisory locks of the agents app
KEY_ALPHABET = string.ascii_letters + string.digits


def org_lock(organization_id, salt: int) -> None:
    value = organization_id if isinstance(organization_id, uuid.UUID) else uuid.UUID(str(organization_id))
    key = ((value.int ^ salt) & 0x7FFFFFFF) - (1 << 30)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [LOCK_NAMESPACE, key])
