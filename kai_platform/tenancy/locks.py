"""Per-organization PostgreSQL advisory locks, held until the current transaction ends.

The key is derived from the organization's UUID (never from ``hash()``, which differs between
processes), so every process and replica takes the same lock."""

from __future__ import annotations

import uuid

from django.db import connection

#: lock namespaces (the first key of the two-key advisory lock)
EVENTS = 0x6B41
FILES = 0x6B46
VOICE_TRAINING = 0x6B56


def organization_lock_key(organization_id: uuid.UUID | str) -> int:
    value = organization_id if isinstance(organization_id, uuid.UUID) else uuid.UUID(str(organization_id))
    return (value.int & 0x7FFFFFFF) - (1 << 30)


def organization_xact_lock(namespace: int, organization_id: uuid.UUID | str) -> None:
    """Call inside ``transaction.atomic()``: blocks until no other transaction holds this lock."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [namespace, organization_lock_key(organization_id)])
