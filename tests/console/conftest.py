"""Console tests make many users: skip PBKDF2 (most of their time otherwise) where no test
signs in with a password."""
from __future__ import annotations

import uuid

import pytest

from tests.conftest import Member
from tests.factories import MembershipFactory, OrganizationFactory


def fast_user(**extra):
    from apps.accounts.models import User

    return User.objects.create(email=f"u{uuid.uuid4().hex[:12]}@example.com", **extra)


@pytest.fixture
def make_member(db):
    def _make(role="owner", organization=None, user=None, plan=None) -> Member:
        organization = organization or OrganizationFactory(**({"plan": plan} if plan else {}))
        user = user or fast_user()
        membership = MembershipFactory(user=user, organization=organization, role=role)
        return Member(user=user, organization=organization, membership=membership)
    return _make


@pytest.fixture
def member(make_member) -> Member:
    return make_member("owner")
