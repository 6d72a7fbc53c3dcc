"""Django's PostgreSQL backend with the platform's connection pool (``kai_platform.db.pool``)."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.db.backends.base.base import NO_DB_ALIAS
from django.db.backends.postgresql import base
from psycopg_pool import ConnectionPool

from kai_platform.db.pool import BusyAwareConnectionPool


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self) -> BusyAwareConnectionPool | None:
        # Django 5.2's property, building a BusyAwareConnectionPool instead of a ConnectionPool
        pool_options = self.settings_dict["OPTIONS"].get("pool")
        if self.alias == NO_DB_ALIAS or not pool_options:
            return None
        if self.alias not in self._connection_pools:  # type: ignore[attr-defined]
            if self.settings_dict.get("CONN_MAX_AGE", 0) != 0:
                raise ImproperlyConfigured("Pooling doesn't support persistent connections.")

            pool_options = {} if pool_options is True else pool_options
            connect_kwargs = self.get_connection_params()
            connect_kwargs["autocommit"] = True  # Django sets it properly later on
            pool = BusyAwareConnectionPool(
                kwargs=connect_kwargs,
                open=False,  # not during startup
                configure=self._configure_connection,  # type: ignore[attr-defined]
                check=ConnectionPool.check_connection if self.settings_dict["CONN_HEALTH_CHECKS"] else None,
                **pool_options,
            )
            self._connection_pools.setdefault(self.alias, pool)  # type: ignore[attr-defined]
        pool_of_alias: BusyAwareConnectionPool = self._connection_pools[self.alias]  # type: ignore[attr-defined]  # Django 5.2's, not in the stubs
        return pool_of_alias
