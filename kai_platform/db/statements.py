"""Statements built from the ORM and sent together: ``insert_statement`` is the INSERT Django would
send for an unsaved object; ``execute_together`` sends several statements in ONE round trip."""

from __future__ import annotations

from typing import Any, cast

from django.db import connection
from django.db.models import Field, Model
from django.db.models.sql import InsertQuery

#: model → (its INSERT's fields, its SQL when every value is a plain ``%s``, else None): the SQL
#: of a model's one-row INSERT is the same every time, so it is compiled once per process
_INSERTS: dict[type[Model], tuple[list[Field[Any, Any]], str | None]] = {}


def insert_statement(obj: Model) -> tuple[str, list[Any]]:
    """The INSERT Django would send for ``obj`` (defaults and ``auto_now_add`` applied to ``obj``)."""
    model = type(obj)
    shape = _INSERTS.get(model)
    if shape is None:
        return _insert_shape(obj)
    fields, sql = shape
    values = [field.pre_save(obj, True) for field in fields]
    if sql is None or any(hasattr(value, "resolve_expression") for value in values):
        return _compiled_insert(obj, fields)
    return sql, [field.get_db_prep_save(value, connection=connection) for field, value in zip(fields, values)]


def _insert_shape(obj: Model) -> tuple[str, list[Any]]:
    """``insert_statement`` of a model's first object, compiled, and its SQL kept when it is the plain
    ``INSERT … VALUES (%s, …)`` (no field with a placeholder of its own)."""
    meta = type(obj)._meta
    fields = [f for f in meta.local_concrete_fields if f is not meta.auto_field]
    sql, params = _compiled_insert(obj, fields)
    quote = connection.ops.quote_name  # a concrete field always has its column (the stubs allow None)
    plain = "INSERT INTO {} ({}) VALUES ({})".format(
        quote(meta.db_table), ", ".join(quote(cast(str, f.column)) for f in fields), ", ".join(["%s"] * len(fields))
    )
    _INSERTS[type(obj)] = (fields, sql if sql == plain and len(params) == len(fields) else None)
    return sql, params


def _compiled_insert(obj: Model, fields: list[Field[Any, Any]]) -> tuple[str, list[Any]]:
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
