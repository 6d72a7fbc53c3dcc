"""Statements built from the ORM: ``insert_statement`` is the INSERT Django would send for an
unsaved object, for a service that sends it with other statements."""

from __future__ import annotations

from django.db import connection
from django.db.models.sql import InsertQuery


def insert_statement(obj) -> tuple[str, list]:
    """The INSERT Django would send for ``obj`` (defaults and ``auto_now_add`` applied to ``obj``)."""
    meta = type(obj)._meta
    fields = [f for f in meta.local_concrete_fields if f is not meta.auto_field]
    query = InsertQuery(type(obj))
    query.insert_values(fields, [obj])
    [(sql, params)] = query.get_compiler(connection=connection).as_sql()
    return sql, list(params)
