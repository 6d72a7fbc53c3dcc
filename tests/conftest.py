"""Shared fixtures: members with roles, authenticated API clients, a real Celery worker."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest
from django.conf import settings
from rest_framework.test import APIClient

# Tests hash passwords with MD5: PBKDF2's million rounds cost ~0.25 s of CPU per user made or signed
# in, minutes of every run. PBKDF2 stays in the list so hashes made by a process started without
# this (a live server, a worker) still verify; production keeps PBKDF2 only (settings.py).
TEST_PASSWORD_HASHERS = "django.contrib.auth.hashers.MD5PasswordHasher,django.contrib.auth.hashers.PBKDF2PasswordHasher"
os.environ.setdefault("KAI_PASSWORD_HASHERS", TEST_PASSWORD_HASHERS)  # inherited by subprocesses
settings.PASSWORD_HASHERS = os.environ["KAI_PASSWORD_HASHERS"].split(",")
# Workers started by tests preload the OpenAI SDK only: the Anthropic SDK's import is over a second
# of CPU per worker, and no test bounds the time of an Anthropic provider's first call.
os.environ.setdefault("KAI_PRELOAD_SDKS", "openai")
# Celery runs Django's system checks at every worker start (a few tenths of a second of CPU each);
# the suite runs them itself (tests/kernel/test_settings.py).
os.environ.setdefault("CELERY_SKIP_CHECKS", "1")
# Every test client builds Django's middleware chain anew, and WhiteNoise's middleware then indexes
# every static file the finders know (an os.stat each). Autorefresh looks a file up when it is asked
# for instead; servers started by tests index once, as in production.
settings.WHITENOISE_AUTOREFRESH = True

from tests import flush
from tests.factories import MembershipFactory, OrganizationFactory, UserFactory
from tests.helpers import LiveServer, SharedWorker
from tests.ordering import DurationRecorder, file_scheduling, load_durations, order_items

flush.install()  # transactional tests end with DELETE, not TRUNCATE (tests/flush.py)


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """A pool opened before the test database exists points at the real database; Django's
    test-database creation does not close it, so close it here (a safety net: nothing should
    touch the database at import time)."""
    from django.db import connections

    for connection in connections.all():
        connection.close_pool()


@pytest.fixture(scope="session")
def django_db_setup(request, django_test_environment, django_db_blocker, django_db_modify_db_settings):
    """pytest-django's, except that the test database starts as a copy of the migrated template
    (``tests.launcher.migrated_template``: made once for all xdist workers and kept between runs),
    so each xdist worker's ``migrate`` has nothing left to do instead of every migration.
    (No test uses serialized rollback: nothing is serialized.)"""
    from django.db import connection
    from django.test.utils import setup_databases, teardown_databases

    from tests.launcher import clone_database, drop_database, migrated_template

    verbosity = request.config.option.verbose
    with django_db_blocker.unblock():
        name = connection.settings_dict["TEST"].get("NAME") or f"test_{connection.settings_dict['NAME']}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
        drop_database(name)
        clone_database(migrated_template({**env, "DJANGO_ENV": "test"}), name)
        db_cfg = setup_databases(verbosity=verbosity, interactive=False, keepdb=True, serialized_aliases=set())
    yield
    with django_db_blocker.unblock():
        # a shared worker or live server may still hold a session on it: dropped WITH (FORCE)
        teardown_databases(db_cfg, verbosity=verbosity, keepdb=True)
        drop_database(name)


@pytest.fixture(scope="session", autouse=True)
def _close_connection_pools_before_teardown(django_db_setup, django_db_blocker):
    """Idle pooled connections (threads return theirs to the pool) would keep the test
    database busy when pytest-django drops it."""
    yield
    import asyncio

    from asgiref.sync import sync_to_async
    from django.db import connections

    with django_db_blocker.unblock():
        # the connection of asgiref's shared thread (database_sync_to_async in socket tests)
        asyncio.run(sync_to_async(connections.close_all)())
        for connection in connections.all():
            connection.close_pool()


@pytest.fixture(autouse=True)
def _isolated_cache():
    """Rate-limit counters, revoked tokens and worker heartbeats start empty in every test
    (only this test process's key prefix is touched)."""
    from django.conf import settings
    from django.core.cache import cache
    from django_redis import get_redis_connection

    # SCAN walks the whole database (every xdist worker's keys, quota keys that outlive their test):
    # a thousand keys a round trip, not SCAN's default ten
    cache.delete_pattern("*", itersize=1000)
    redis = get_redis_connection("default")
    keys = list(redis.scan_iter(f"{settings.KAI_REDIS_PREFIX}:ws:*", count=1000))
    if keys:
        redis.delete(*keys)
    yield


@dataclass
class Member:
    user: object
    organization: object
    membership: object

    @property
    def role(self):
        return self.membership.role


@pytest.fixture
def user_factory():
    """How ``make_member`` makes users; a test folder may override it (the console tests skip
    password hashing where nobody signs in with a password)."""
    return UserFactory


@pytest.fixture
def make_member(db, user_factory):
    def _make(role="owner", organization=None, user=None, plan=None) -> Member:
        organization = organization or OrganizationFactory(**({"plan": plan} if plan else {}))
        user = user or user_factory()
        membership = MembershipFactory(user=user, organization=organization, role=role)
        return Member(user=user, organization=organization, membership=membership)

    return _make


@pytest.fixture
def member(make_member) -> Member:
    return make_member("owner")


def jwt_for(user) -> dict:
    from apps.accounts.services import auth_issue_tokens

    return auth_issue_tokens(user=user)


@pytest.fixture
def api_client():
    return APIClient()


@pytest.fixture
def client_for():
    """``client_for(member, via="jwt"|"api_key", organization_header=None)`` → APIClient."""

    def _client(member: Member, via: str = "jwt", organization_header: str | None = None) -> APIClient:
        client = APIClient()
        if via == "jwt":
            token = jwt_for(member.user)["access_token"]
        else:
            from apps.accounts.services import api_key_create

            _, token = api_key_create(
                organization=member.organization, created_by=member.user, creator_role=member.role, name="test key"
            )
        headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
        if organization_header:
            headers["HTTP_X_ORGANIZATION"] = organization_header
        client.credentials(**headers)
        return client

    return _client


@pytest.fixture
def owner_client(member, client_for) -> APIClient:
    return client_for(member)


@pytest.fixture(scope="session")
def shared_live_server(django_db_setup, django_db_blocker):
    """One real daphne with default settings per xdist worker, for every test that needs a server
    but no settings of its own: it keeps no state of its own (tests flush the database)."""
    with django_db_blocker.unblock():
        server = LiveServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def _shared_worker(django_db_setup, django_db_blocker):
    """The xdist worker's one Celery worker, started when a test first asks for it (see
    ``SharedWorker``); stopped before the test database is dropped."""
    holder: list[SharedWorker] = []
    yield holder
    for worker in holder:
        worker.stop()


@pytest.fixture
def celery_worker_process(transactional_db, _shared_worker):
    """A real Celery worker (threads pool, default + runs queues) on this test's database and
    Redis prefix: the xdist worker's shared one, resumed for this test and paused (idle, not
    consuming) before the test's tables are flushed. A test that stops or kills it gets a new
    one next time."""
    if _shared_worker and not _shared_worker[0].alive():
        _shared_worker.pop().stop()
    if not _shared_worker:
        _shared_worker.append(SharedWorker())
    worker = _shared_worker[0]
    worker.resume()
    yield worker
    if worker.alive():
        try:
            worker.pause()
        except Exception:
            _shared_worker.remove(worker)
            worker.stop()
            raise


def pytest_addoption(parser):
    parser.addoption(
        "--store-durations",
        action="store_true",
        help="write the durations of the tests that ran into tests/durations.json",
    )


def pytest_configure(config):
    """xdist hands tests out two at a time (instead of a quarter of each worker's share at once),
    so the slow tests at the front of the order start on every worker (``tests/ordering.py``)."""
    if getattr(config.option, "maxschedchunk", "absent") is None:
        config.option.maxschedchunk = 2
    if config.getoption("store_durations") and not hasattr(config, "workerinput"):
        config.pluginmanager.register(DurationRecorder(), "kai-durations")


def pytest_collection_modifyitems(config, items):
    """Slow units of work first, by their recorded durations (``tests/ordering.py``)."""
    order_items(items, load_durations())


def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile``: a file is a unit of work, the ``kai up`` platforms' files one unit
    together (``tests/ordering.py``)."""
    if config.getvalue("dist") == "loadfile":
        return file_scheduling()(config, log)
    return None


@pytest.fixture(autouse=True)
def _fresh_channel_layer():
    """Each test gets a channel-layer instance of its own. channels-redis keeps receive state on the
    instance (an asyncio lock taken while a consumer waits for a message); a test whose event loop
    ends while a consumer is mid-receive would leave that lock held and bound to a dead loop, and the
    next socket test in the same process fails with "bound to a different event loop" or hangs."""
    from channels.layers import channel_layers

    channel_layers.backends.pop("default", None)
    yield
    channel_layers.backends.pop("default", None)
