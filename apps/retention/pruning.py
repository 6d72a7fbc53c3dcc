"""Batched deletes that never hold a long lock: every statement touches at most ``BATCH`` rows and
commits on its own, dependents go first (CASCADE relations deleted, SET_NULL ones cleared, the
same way, in batches), so a prune of millions of rows runs beside live traffic."""
from __future__ import annotations

import time
from collections import Counter

from django.db import connection, models, transaction

#: rows per statement
BATCH = 5000


def _pause(pause: float) -> None:
    if pause:
        time.sleep(pause)


def delete_where(model, lookup: models.Q, counts: Counter, *, order: str = "pk", pause: float = 0.0,
                 batch: int | None = None, limit: int | None = None) -> int:
    """Delete every ``model`` row matching ``lookup`` (and what depends on it), ``batch`` rows a
    statement (default ``BATCH``), oldest first by ``order``; at most ``limit`` rows. Returns how
    many were deleted."""
    batch = batch or BATCH
    manager = model._base_manager
    deleted = 0
    while limit is None or deleted < limit:
        size = batch if limit is None else min(batch, limit - deleted)
        pks = list(manager.filter(lookup).order_by(order).values_list("pk", flat=True)[:size])
        if not pks:
            break
        deleted += delete_pks(model, pks, counts, pause=pause, batch=batch)
        _pause(pause)
    return deleted


def delete_pks(model, pks: list, counts: Counter, *, pause: float = 0.0, batch: int | None = None) -> int:
    """Delete these rows of ``model`` after their dependents (≤ ``batch`` rows a statement)."""
    batch = batch or BATCH
    for relation in model._meta.related_objects:
        if not relation.on_delete or relation.field.model is not relation.related_model:
            continue
        related, field = relation.related_model, relation.field
        if relation.on_delete is models.CASCADE:
            delete_where(related, models.Q(**{f"{field.name}__in": pks}), counts, pause=pause, batch=batch)
        elif relation.on_delete is models.SET_NULL:
            _clear_where(related, field, pks, batch)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f'DELETE FROM "{model._meta.db_table}" WHERE "{model._meta.pk.column}" = ANY(%s)', [pks])
        deleted = cursor.rowcount
    counts[model._meta.label_lower] += deleted
    return deleted


def _clear_where(model, field, pks: list, batch: int) -> None:
    manager = model._base_manager
    while True:
        ids = list(manager.filter(**{f"{field.name}__in": pks}).values_list("pk", flat=True)[:batch])
        if not ids:
            return
        with transaction.atomic():
            manager.filter(pk__in=ids).update(**{field.name: None})
