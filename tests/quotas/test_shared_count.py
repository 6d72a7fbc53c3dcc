"""Two server processes, one quota: the Redis window is shared and checked atomically."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from apps.accounts.services import api_key_create
from apps.quotas.models import QuotaOverride
from apps.runs.models import Execution
from tests.crews.conftest import make_agent
from tests.helpers import LiveServer

LIMIT = 4
PER_SERVER = 4


def post(url: str, token: str) -> tuple[int, dict]:
    request = urllib.request.Request(
        url,
        data=json.dumps({"description": "Summarise the news"}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.django_db(transaction=True)
def test_two_server_processes_share_one_count(make_member):
    member = make_member("owner")
    QuotaOverride.objects.create(organization=member.organization, agent_executions_per_hour=LIMIT)
    agent = make_agent(member)
    _, token = api_key_create(
        organization=member.organization, created_by=member.user, creator_role="owner", name="quota test"
    )
    with ThreadPoolExecutor(2) as pool:
        servers = list(pool.map(lambda _: LiveServer(), range(2)))
    try:
        urls = [f"{server.url}/api/v1/agents/{agent.pk}/task" for server in servers] * PER_SERVER
        with ThreadPoolExecutor(len(urls)) as pool:
            answers = list(pool.map(lambda url: post(url, token), urls))
    finally:
        for server in servers:
            server.stop()
    statuses = sorted(status for status, _ in answers)
    assert statuses == [202] * LIMIT + [429] * (2 * PER_SERVER - LIMIT), answers
    refused = [body for status, body in answers if status == 429]
    assert all(body["code"] == "GENERAL_002" and body["quota"]["name"] == "agent_executions" for body in refused)
    assert Execution.objects.for_org(member.organization).count() == LIMIT
