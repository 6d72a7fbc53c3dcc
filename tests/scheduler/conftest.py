"""Fixtures of the scheduler tests: a crew and an agent to schedule."""

from __future__ import annotations

import pytest

from tests.crews.conftest import make_agent, make_crew


@pytest.fixture
def crew(member):
    return make_crew(member)


@pytest.fixture
def agent(member):
    return make_agent(member)


@pytest.fixture
def make_schedule(member, crew):
    from apps.scheduler.services import schedule_create

    def _make(**data):
        values = {"name": "Nightly", "cron_expression": "0 9 * * *", "crew": crew.pk, "inputs": {"topic": "AI"}}
        values.update(data)
        return schedule_create(organization=member.organization, actor=member.user, data=values)

    return _make
