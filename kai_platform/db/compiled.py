"""Reads whose SQL is compiled once per process: a queryset on the path of every request (a key
check) that Django would otherwise compile anew each time — for a wide ``select_related`` that
compile is most of the read's CPU. The rows are turned into model instances as the queryset
would (``ModelIterable``: the same converters, ``from_db``, and related objects from the join)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model, QuerySet
from django.db.models.query import get_related_populators


class CompiledRead:
    """``build(*args) -> QuerySet`` compiled once (on the first call), then run with each call's
    ``args`` as its parameters. Every argument must reach the SQL unchanged, as one parameter
    (a ``CharField`` compared with ``=``, or a list a ``RawSQL`` casts to an array); anything else
    fails when it is compiled."""

    def __init__(self, build: Callable[..., QuerySet[Any]]):
        self._build = build
        self._lock = threading.Lock()
        self._plan: _Plan | None = None

    def first(self, *args: Any) -> Any:
        rows = self.all(*args)
        return rows[0] if rows else None

    def all(self, *args: Any) -> list[Any]:
        plan = self._plan or self._compile(len(args))
        params = [args[slot] if slot is not None else value for slot, value in plan.params]
        connection = connections[plan.db]
        with connection.cursor() as cursor:
            cursor.execute(plan.sql, params)
            rows = cursor.fetchall()
        return [plan.instance(row, connection) for row in rows]

    def _compile(self, nargs: int) -> _Plan:
        with self._lock:
            if self._plan is None:
                self._plan = _Plan(self._build, nargs)
        return self._plan


class _Plan:
    """A compiled queryset: its SQL, where each call's arguments go among its parameters, and how a
    row becomes its model instance (with the related instances of its ``select_related``)."""

    def __init__(self, build: Callable[..., QuerySet[Any]], nargs: int):
        markers = [f"kai-compiled-{index}-{uuid.uuid4().hex}" for index in range(nargs)]
        queryset = build(*markers)
        self.db = queryset.db
        compiler = queryset.query.get_compiler(using=self.db)
        self.sql, params = compiler.as_sql()
        self.params = [(markers.index(p) if isinstance(p, str) and p in markers else None, p) for p in params]
        placed = sorted(slot for slot, _ in self.params if slot is not None)
        if placed != list(range(nargs)):
            raise ValueError("each argument of a compiled read must be one parameter of its SQL, unchanged")
        select, klass_info = compiler.select, compiler.klass_info
        columns = [column[0] for column in select[: compiler.col_count]]
        if compiler.annotation_col_map or klass_info is None or compiler.has_composite_fields(columns):
            raise ValueError("a compiled read selects model rows only")
        self.model = klass_info["model"]
        fields = klass_info["select_fields"]
        self.start, self.end = fields[0], fields[-1] + 1
        self.init_list = [column[0].target.attname for column in select[self.start : self.end]]
        # the stubs describe a later Django's signature (with ``fetch_mode``)
        self.related = get_related_populators(klass_info, select, self.db)  # type: ignore[call-arg]
        self.converters = list(compiler.get_converters(columns).items())

    def instance(self, row: tuple[Any, ...] | list[Any], connection: BaseDatabaseWrapper) -> Model:
        if self.converters:
            row = list(row)
            for position, (converters, expression) in self.converters:
                value = row[position]
                for converter in converters:
                    value = converter(value, expression, connection)
                row[position] = value
        obj: Model = self.model.from_db(self.db, self.init_list, row[self.start : self.end])
        for populator in self.related:
            populator.populate(row, obj)
        return obj
