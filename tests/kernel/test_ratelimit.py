"""Rate limits per organization plan, counted in Redis (DESIGN §6, §14)."""

import subprocess
import sys
import time

import pytest
import time_machine

from kai_platform.api.errors import codes
from tests.helpers import BASE_DIR, assert_envelope, subprocess_env

pytestmark = pytest.mark.django_db


def one_window():
    """Clock frozen for a test that counts up to a limit: requests that straddled a fixed
    window's rollover (a slow machine takes seconds for 121 of them) would start a new count."""
    return time_machine.travel(time.time(), tick=False)


def test_headers_on_every_api_response(owner_client, api_client):
    ok = owner_client.get("/api/v1/auth/me")
    assert ok["X-RateLimit-Limit"] == "200" and ok["X-RateLimit-Type"] == "organization"
    assert int(ok["X-RateLimit-Remaining"]) == 199
    assert int(ok["X-RateLimit-Reset"]) > 0
    anonymous = api_client.get("/api/v1/auth/me")  # refused before DRF's throttle ran
    assert anonymous.status_code == 401
    assert anonymous["X-RateLimit-Type"] == "ip" and anonymous["X-RateLimit-Limit"] == "200"
    missing = api_client.get("/api/v1/nowhere")
    assert missing["X-RateLimit-Type"] == "ip"


def test_free_plan_soft_warning_then_hard_429(make_member, client_for):
    member = make_member(plan="free")  # 60 soft / 120 hard
    client = client_for(member)
    statuses, warned_at = [], None
    with one_window():
        for n in range(1, 122):
            response = client.get("/api/v1/auth/session")
            statuses.append(response.status_code)
            if warned_at is None and "X-RateLimit-Warning" in response:
                warned_at = n
        last = client.get("/api/v1/auth/session")
    assert warned_at == 61
    assert statuses[:120] == [200] * 120
    body = assert_envelope(last, 429, codes.RATE_LIMIT_EXCEEDED)
    assert body["type"] == "rate_limited"
    assert 1 <= int(last["Retry-After"]) <= 60
    assert last["X-RateLimit-Remaining"] == "0"


def test_organizations_are_counted_separately(make_member, client_for):
    a, b = make_member(plan="free"), make_member(plan="free")
    client_a = client_for(a)
    with one_window():
        for _ in range(121):
            client_a.get("/api/v1/auth/session")
        assert client_a.get("/api/v1/auth/session").status_code == 429
    assert client_for(b).get("/api/v1/auth/session").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_the_count_is_shared_across_processes(make_member, client_for):
    """Another OS process spends 100 of the org's 120; this one gets the remaining 20."""
    from apps.accounts.services import api_key_create

    member = make_member(plan="free")
    _, key = api_key_create(
        organization=member.organization, created_by=member.user, creator_role="owner", name="shared"
    )
    script = (
        "import django; django.setup()\n"
        "from rest_framework.test import APIClient\n"
        f"c = APIClient(); c.credentials(HTTP_AUTHORIZATION='Bearer {key}')\n"
        "codes = [c.get('/api/v1/auth/session').status_code for _ in range(100)]\n"
        "assert codes == [200] * 100, codes\n"
    )
    subprocess.run(
        [sys.executable, "-c", script],
        cwd=BASE_DIR,
        check=True,
        env=subprocess_env(DJANGO_SETTINGS_MODULE="kai_platform.settings"),
        timeout=120,
    )
    client = client_for(member, via="api_key")
    statuses = [client.get("/api/v1/auth/session").status_code for _ in range(21)]
    assert statuses == [200] * 20 + [429]
