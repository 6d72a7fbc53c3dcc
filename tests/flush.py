"""Emptying the database after a transactional test with DELETE instead of Django's TRUNCATE.

Django's ``TransactionTestCase`` ends each test with ``flush``: one TRUNCATE of every table, which
makes PostgreSQL create a new file for each table and sync them at commit, under an ACCESS EXCLUSIVE
lock that waits on every live server and worker still holding a connection. A test's tables hold a
few rows, so DELETE (constraints deferred to the commit, one transaction) empties them far sooner
with the same result (docs/testing.md has the figures).

Content types and permissions are kept: ``flush`` deletes them and its ``post_migrate`` handlers
write the same rows again (they follow from the models), so keeping them ends in the same state.
Those handlers also clear the process's content-type cache; so does this.
"""

from __future__ import annotations

from django.db import connections, transaction
from django.test.testcases import TransactionTestCase

#: rows that ``post_migrate`` would write back after a flush: the same before and after every test
KEPT_TABLES = frozenset({"django_content_type", "auth_permission"})


def delete_every_row(alias: str) -> None:
    connection = connections[alias]
    tables = connection.introspection.django_table_names(only_existing=True, include_views=False)
    with transaction.atomic(using=alias), connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        for table in sorted(set(tables) - KEPT_TABLES):
            cursor.execute(f"DELETE FROM {connection.ops.quote_name(table)}")


def _fixture_teardown(self) -> None:
    from django.contrib.contenttypes.models import ContentType  # deferred: app registry (conftest imports this early)

    for alias in self._databases_names(include_mirrors=False):
        delete_every_row(alias)
    ContentType.objects.clear_cache()


def install() -> None:
    """Every transactional test (pytest-django's ``transaction=True`` runs a ``TransactionTestCase``)
    ends with :func:`delete_every_row`."""
    TransactionTestCase._fixture_teardown = _fixture_teardown
