"""A psycopg pool whose short timeout is for a database it cannot reach, not for a busy pool.

A web process must answer 503 ``GENERAL_004`` within 2 s when PostgreSQL is gone, so its pool
timeout is short (1 s). With psycopg_pool's one timeout, the same second would also cut off
requests only queued behind others on a healthy database (a cold pool grows one connection at a
time; bench B8, docs/benchmarks.md). Here the timeout keeps its meaning for an unreachable database, and a caller
keeps waiting (up to ``busy_timeout``) while the database answered the pool's last connection
attempt — it is waiting for its turn, not for a dead server.

psycopg_pool cannot extend a wait, so a caller past the short timeout waits in 250 ms slices and
re-joins the queue each time (order among such long waiters is approximate). Reachability is
read off the pool's private ``_connect`` (tests/kernel/test_db_pool.py fails if that changes).
"""

from __future__ import annotations

from time import monotonic
from typing import Any

from psycopg import Connection
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolTimeout

#: how often a caller waiting on a busy pool re-checks that the database is still reachable
RECHECK_SECONDS = 0.25


class BusyAwareConnectionPool(ConnectionPool):
    def __init__(self, *args: Any, busy_timeout: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.busy_timeout = max(float(busy_timeout or 0), self.timeout)
        self._connected_at: float | None = None
        self._connect_failed_at: float | None = None

    def _connect(self, timeout: float | None = None) -> Connection[TupleRow]:
        try:
            conn = super()._connect(timeout)
        except BaseException:
            self._connect_failed_at = monotonic()
            raise
        self._connected_at = monotonic()
        return conn

    def reachable(self) -> bool:
        """The last connection attempt succeeded (and there was one)."""
        connected, failed = self._connected_at, self._connect_failed_at
        return connected is not None and (failed is None or failed < connected)

    def getconn(self, timeout: float | None = None) -> Connection[TupleRow]:
        started = monotonic()
        try:
            return super().getconn(timeout)
        except PoolTimeout:
            if timeout is not None:  # an explicit timeout is the caller's own
                raise
            while self.reachable() and (remaining := self.busy_timeout - (monotonic() - started)) > 0:
                try:
                    return super().getconn(min(RECHECK_SECONDS, remaining))
                except PoolTimeout:
                    continue
            raise
