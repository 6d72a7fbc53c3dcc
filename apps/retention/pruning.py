"""Batched deletes that never hold a long lock and never take more than a share of the machine:
every statement touches at most ``batch`` rows and commits on its own, dependents go first
(CASCADE relations deleted, SET_NULL ones cleared, the same way, in batches), and after each
statement the prune rests in proportion to the time it worked (a duty cycle), so a prune of
millions of rows runs beside live traffic.

Leaf dependents (logs, spans, transitions: tables nothing else points to) are deleted by their
indexed foreign key, a slice of parents at a time sized so one statement deletes about ``batch``
rows: ``DELETE … WHERE ctid = ANY(ARRAY(SELECT ctid … WHERE fk = ANY(parents) LIMIT batch))``. No
ids travel to the worker and no statement walks rows it does not delete."""

from __future__ import annotations

import logging
import os
import resource
import time
from collections import Counter

from django.db import connection, models, transaction

logger = logging.getLogger(__name__)

#: rows per statement
BATCH = 5000
#: a slice of parents is sized for this share of ``batch`` dependents (room for uneven fan-out)
FILL = 0.8


class Pruner:
    """One prune's deletes and what they removed (``counts``: rows per model label).

    ``pause``: the least rest after a statement (seconds); ``duty``: the share of wall time the
    prune may work (0.25: rest three times as long as each statement took; 1: no duty cycle)."""

    def __init__(
        self, counts: Counter | None = None, *, pause: float = 0.0, duty: float = 1.0, batch: int | None = None
    ):
        self.counts = counts if counts is not None else Counter()
        self.pause, self.duty, self.batch = pause, min(max(duty, 0.01), 1.0), batch or BATCH
        self.statements = self.largest = 0
        self.worked = self.rested = 0.0
        self._fanout: dict[str, float] = {}
        self._since = time.monotonic()

    # --- pacing -----------------------------------------------------------------------------

    def rest(self) -> None:
        """Sleep for the duty cycle's share of the work done since the last rest (at least
        ``pause``)."""
        worked = time.monotonic() - self._since
        self.worked += worked
        seconds = max(self.pause, worked * (1 - self.duty) / self.duty)
        if seconds > 0:
            time.sleep(seconds)
            self.rested += seconds
        self._since = time.monotonic()

    def _execute(self, sql: str, params: list) -> int:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.rowcount
        self.statements += 1
        self.largest = max(self.largest, rows)
        self.rest()
        return rows

    def stats(self) -> dict:
        return {
            "statements": self.statements,
            "largest_statement": self.largest,
            "worked_seconds": round(self.worked, 2),
            "rested_seconds": round(self.rested, 2),
        }

    # --- deletes ----------------------------------------------------------------------------

    def delete_where(self, model, lookup: models.Q, *, order: str = "pk", limit: int | None = None) -> int:
        """Delete every ``model`` row matching ``lookup`` (and what depends on it), oldest first by
        ``order``; at most ``limit`` rows. Returns how many were deleted."""
        manager = model._base_manager
        deleted = 0
        while limit is None or deleted < limit:
            size = self.batch if limit is None else min(self.batch, limit - deleted)
            pks = list(manager.filter(lookup).order_by(order).values_list("pk", flat=True)[:size])
            if not pks:
                break
            deleted += self.delete_pks(model, pks)
        return deleted

    def delete_pks(self, model, pks: list) -> int:
        """Delete these rows (at most ``batch``) of ``model`` after their dependents."""
        for relation in model._meta.related_objects:
            if not relation.on_delete or relation.field.model is not relation.related_model:
                continue
            related, field = relation.related_model, relation.field
            if relation.on_delete is models.CASCADE:
                if _is_leaf(related):
                    self._delete_leaf(related, field, pks)
                else:
                    self.delete_where(related, models.Q(**{f"{field.name}__in": pks}))
            elif relation.on_delete is models.SET_NULL:
                self._clear_where(related, field, pks)
        table, pk = model._meta.db_table, model._meta.pk.column
        deleted = self._execute(f'DELETE FROM "{table}" WHERE "{pk}" = ANY(%s)', [pks])
        self.counts[model._meta.label_lower] += deleted
        return deleted

    def _delete_leaf(self, model, field, pks: list) -> None:
        """Delete the rows of ``model`` whose ``field`` is one of ``pks``: slices of parents sized
        by the fan-out seen so far, each slice's rows ``batch`` at a time."""
        table, column, label = model._meta.db_table, field.column, model._meta.label_lower
        sql = (
            f'DELETE FROM "{table}" WHERE ctid = ANY(ARRAY(SELECT ctid FROM "{table}" '
            f'WHERE "{column}" = ANY(%s) LIMIT %s))'
        )
        start = 0
        while start < len(pks):
            fanout = self._fanout.get(label, 1.0)
            size = max(1, min(len(pks) - start, int(self.batch * FILL / fanout)))
            chunk, found = pks[start : start + size], 0
            while True:
                rows = self._execute(sql, [chunk, self.batch])
                found += rows
                if rows < self.batch:
                    break
            self.counts[label] += found
            self._fanout[label] = max(found / size, 0.1)
            start += size
        # a row updated while its slice was deleted has a new ctid: catch it before the parents go
        while rows := self._execute(sql, [pks, self.batch]):
            self.counts[label] += rows

    def _clear_where(self, model, field, pks: list) -> None:
        manager = model._base_manager
        while True:
            ids = list(manager.filter(**{f"{field.name}__in": pks}).values_list("pk", flat=True)[: self.batch])
            if not ids:
                return
            with transaction.atomic():
                manager.filter(pk__in=ids).update(**{field.name: None})
            self.rest()


def _is_leaf(model) -> bool:
    """Nothing else is deleted or cleared with a row of ``model``."""
    return not any(
        r.on_delete in (models.CASCADE, models.SET_NULL) and r.field.model is r.related_model
        for r in model._meta.related_objects
    )


# --- a prune's priority on the host -----------------------------------------------------------


class lowered_priority:
    """While a prune runs, its thread and (when the database server is on this host and the
    worker may) its PostgreSQL backend run at a lower CPU priority (``nice``), so web requests
    win the cores. Restored on exit; a backend that cannot be restored is disconnected (the pool
    opens a fresh one)."""

    def __init__(self, niceness: int):
        self.niceness = niceness
        self.saved: list[tuple[int, int]] = []
        self.backend: int | None = None

    def _lower(self, pid: int) -> bool:
        try:
            before = os.getpriority(os.PRIO_PROCESS, pid)
            os.setpriority(os.PRIO_PROCESS, pid, max(before, self.niceness))
        except OSError:
            return False
        self.saved.append((pid, before))
        return True

    def __enter__(self):
        if self.niceness <= 0 or not hasattr(os, "setpriority"):
            return self
        if _may_raise_priority():  # only when it can be given back: the thread serves other tasks after
            self._lower(0)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pid = cursor.fetchone()[0]
        if _is_local_postgres(pid) and self._lower(pid):
            self.backend = pid
        return self

    def __exit__(self, *exc):
        for pid, before in reversed(self.saved):
            try:
                os.setpriority(os.PRIO_PROCESS, pid, before)
            except OSError:
                if pid == self.backend:
                    connection.close()
                else:
                    logger.debug("retention: could not restore the priority of %s", pid)
        self.saved.clear()
        return False


def _may_raise_priority() -> bool:
    return os.geteuid() == 0 or resource.getrlimit(resource.RLIMIT_NICE)[0] >= 20


def _is_local_postgres(pid: int) -> bool:
    """``pid`` on this host is our PostgreSQL backend (not another process that shares the number
    because the server runs elsewhere)."""
    host = str(connection.settings_dict.get("HOST") or "")
    if host not in ("", "localhost", "127.0.0.1", "::1") and not host.startswith("/"):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().startswith(b"postgres")
    except OSError:
        return False
