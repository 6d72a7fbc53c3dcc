"""Escalating locks after repeated failures (kai_platform.api.backoff), in the real Redis."""

from __future__ import annotations

import pytest

from kai_platform.api import backoff
from kai_platform.api.errors import RateLimited

POLICY = backoff.Policy("test")


@pytest.fixture(autouse=True)
def _lock_times(settings):
    settings.KAI_AUTH_FAILURES_ALLOWED = 3
    settings.KAI_AUTH_LOCK_SECONDS = 60
    settings.KAI_AUTH_LOCK_MAX_SECONDS = 900


def _expire_lock(subject):
    backoff._redis().delete(POLICY._keys(subject)[1])  # as if the lock's time had passed


def test_the_allowed_th_failure_locks_and_each_later_one_doubles_up_to_the_cap():
    assert [backoff.record_failure(POLICY, "ann") for _ in range(2)] == [0, 0]
    locks = []
    for _ in range(6):
        locks.append(backoff.record_failure(POLICY, "ann"))
        _expire_lock("ann")
    assert locks == [60, 120, 240, 480, 900, 900]


def test_while_locked_every_attempt_is_refused_with_retry_after_and_others_are_not():
    for _ in range(3):
        backoff.record_failure(POLICY, "ann")
    assert 55 <= backoff.locked_for([(POLICY, "ann")]) <= 60
    with pytest.raises(RateLimited) as refused:
        backoff.refuse_if_locked([(POLICY, "bob"), (POLICY, "ann")], "locked")
    assert 55 <= refused.value.retry_after <= 60
    backoff.refuse_if_locked([(POLICY, "bob")], "locked")  # another subject: no lock
    assert backoff.locked_for([(backoff.Policy("other"), "ann")]) == 0  # another policy: none


def test_a_success_forgets_failures_and_lock():
    for _ in range(4):
        backoff.record_failure(POLICY, "ann")
    backoff.reset([(POLICY, "ann")])
    assert backoff.locked_for([(POLICY, "ann")]) == 0
    assert [backoff.record_failure(POLICY, "ann") for _ in range(3)] == [0, 0, 60]  # starts short again


def test_subjects_are_hashed_into_the_keys():
    failures_key, lock_key = POLICY._keys("ann@example.com")
    assert "ann@example.com" not in failures_key + lock_key
