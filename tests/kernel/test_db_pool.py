"""The connection pool's two timeouts (kai_platform/db/pool.py): a short one while the database
cannot be reached (a web request answers 503 fast), a long one while the pool is only busy on a
reachable database (a queued request waits for its turn instead of failing)."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from django.db import connection
from psycopg_pool import ConnectionPool, PoolTimeout

from kai_platform.db.pool import BusyAwareConnectionPool
from tests.security.tcp_proxy import TCPProxy, postgres_upstream


def _params(**override) -> dict:
    params = connection.get_connection_params()
    params.update(autocommit=True, **override)
    return params


def _pool(cls=BusyAwareConnectionPool, *, params=None, **options):
    options.setdefault("min_size", 1)
    options.setdefault("max_size", 1)
    pool = cls(kwargs=params or _params(), open=False, **options)
    pool.open(wait=False)
    return pool


def _release_after(pool, conn, seconds: float) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(seconds), pool.putconn(conn)), daemon=True)
    thread.start()
    return thread


def test_a_request_queued_on_a_busy_healthy_pool_waits_for_its_turn():
    pool = _pool(timeout=0.2, busy_timeout=5)
    try:
        held = pool.getconn()
        _release_after(pool, held, 0.8)
        started = time.monotonic()
        conn = pool.getconn()  # psycopg's own pool would give up after 0.2 s (below)
        waited = time.monotonic() - started
        assert 0.6 <= waited < 3, waited
        assert conn.execute("SELECT 1").fetchone() == (1,)
        pool.putconn(conn)
    finally:
        pool.close()


def test_psycopgs_pool_alone_gives_up_on_the_same_busy_pool():
    pool = _pool(ConnectionPool, timeout=0.2)
    try:
        held = pool.getconn()
        thread = _release_after(pool, held, 0.8)
        with pytest.raises(PoolTimeout):
            pool.getconn()
        thread.join()
    finally:
        pool.close()


def test_an_explicit_timeout_is_the_callers_own():
    pool = _pool(timeout=0.2, busy_timeout=5)
    try:
        held = pool.getconn()
        thread = _release_after(pool, held, 0.8)
        started = time.monotonic()
        with pytest.raises(PoolTimeout):
            pool.getconn(timeout=0.2)
        assert time.monotonic() - started < 0.6
        thread.join()
    finally:
        pool.close()


def test_an_unreachable_database_still_fails_within_the_short_timeout():
    proxy = TCPProxy(*_target())  # never started: nothing listens on its port
    pool = _pool(params=_params(host="127.0.0.1", port=proxy.port, connect_timeout=1), timeout=0.5, busy_timeout=10)
    try:
        started = time.monotonic()
        with pytest.raises(PoolTimeout):
            pool.getconn()
        assert time.monotonic() - started < 1.5
        assert not pool.reachable()
    finally:
        pool.close(timeout=1)


def test_a_database_lost_while_callers_wait_ends_their_wait_promptly():
    proxy = TCPProxy(*_target())
    proxy.start()
    pool = _pool(params=_params(host="127.0.0.1", port=proxy.port, connect_timeout=1), timeout=0.3, busy_timeout=20)
    try:
        held = pool.getconn()
        assert pool.reachable()
        outcome = {}

        def wait():
            started = time.monotonic()
            try:
                outcome["conn"] = pool.getconn()
            except PoolTimeout as exc:
                outcome["error"] = exc
            outcome["seconds"] = time.monotonic() - started

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.6)  # past the short timeout: waiting on a busy, reachable pool
        assert waiter.is_alive()
        proxy.stop()  # the database goes away: its holder's next query fails, the connection comes back broken
        with pytest.raises(psycopg.OperationalError):
            held.execute("SELECT 1")
        pool.putconn(held)
        waiter.join(10)
        assert not waiter.is_alive()
        assert "error" in outcome and outcome["seconds"] < 4, outcome
        assert not pool.reachable()
    finally:
        proxy.stop()
        pool.close(timeout=1)


def test_django_uses_the_busy_aware_pool_with_the_settings_timeouts(settings):
    pool = connection.pool
    assert isinstance(pool, BusyAwareConnectionPool)
    options = settings.DATABASES["default"]["OPTIONS"]["pool"]
    assert pool.timeout == options["timeout"]
    assert pool.busy_timeout == max(options["busy_timeout"], options["timeout"])


def _target() -> tuple:
    params = connection.get_connection_params()
    return postgres_upstream(params.get("host"), params.get("port"))
