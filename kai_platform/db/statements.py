"""Statements built from the ORM and sent together: ``insert_statement`` is the INSERT Django would
send for an unsaved object; ``execute_together`` sends several statements in ONE round trip."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.db.models import Model
from django.db.models.sql import InsertQuery


def insert_statement(obj: Model) -> tuple[str, list[Any]]:
    """The INSERT Django would send for ``obj`` (defaults and ``auto_now_add`` applied to ``obj``)."""
    meta = type(obj)._meta
    fields = [f for f in meta.local_concrete_fields if f is not meta.auto_field]
    query = InsertQuery(type(obj))
    query.insert_values(fields, [obj])
    [(sql, params)] = query.get_compiler(connection=connection).as_sql()
    return sql, list(params)


def execute_together(statements: list[tuple[str, list[Any]]]) -> None:
    """Send ``[(sql, params), …]`` (no result rows read) in one query string: one round trip. In the
    caller's transaction if there is one; outside any, PostgreSQL runs the statements of one query
    string as one transaction, so they commit (or fail) together in that round trip."""
    if not statements:
        return
    sql = ";\n".join(sql for sql, _ in statements)
    with connection.cursor() as cursor:
        cursor.execute(sql, [param for _, params in statements for param in params])
