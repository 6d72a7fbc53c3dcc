"""Console tests make many users: skip PBKDF2 (most of their time otherwise) where no test
signs in with a password."""

from __future__ import annotations

import uuid

import pytest


def fast_user(**extra):
    from apps.accounts.models import User

    return User.objects.create(email=f"u{uuid.uuid4().hex[:12]}@example.com", **extra)


@pytest.fixture
def user_factory():
    return fast_user
