"""The dashboard's chart data (``GET /dashboard/charts``): values from the metric rollups plus the
live tail, equal to ``GET /api/v1/metrics``; who sees what (staff: every organization, by
organization; an owner: theirs)."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.runs.models import Execution, TraceSpan
from apps.system.tasks import _save, rollup_minute
from tests.console.conftest import fast_user

pytestmark = pytest.mark.django_db


def _minute(minutes_ago: int) -> datetime.datetime:
    now = timezone.now().replace(second=0, microsecond=0)
    return now - datetime.timedelta(minutes=minutes_ago)


def _run(member, *, at, status="COMPLETED", seconds=1.0, error=""):
    run = Execution.objects.create(
        organization=member.organization, kind="crew", run_name="r", status=status, error=error
    )
    started = at + datetime.timedelta(seconds=1)
    Execution.objects.filter(pk=run.pk).update(
        created_at=at, started_at=started, completed_at=started + datetime.timedelta(seconds=seconds)
    )
    return run


def _llm_span(member, run, *, at, tokens_in, tokens_out, cost):
    return TraceSpan.objects.create(
        organization=member.organization,
        execution=run,
        trace_id="t" * 32,
        span_id=f"s{tokens_in:015d}",
        kind="llm",
        name="m",
        model="builtin/echo",
        started_at=at,
        ended_at=at + datetime.timedelta(seconds=2),
        duration_ms=2000,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        cost=Decimal(cost),
        attributes={"provider": "builtin"},
    )


def _roll_up(*minutes):
    for when in minutes:
        _save(rollup_minute(int(when.timestamp())))


def _at(data, when) -> int:
    return data["times"].index(int(when.timestamp()) // data["bucket_seconds"] * data["bucket_seconds"])


def test_runs_durations_usage_and_failures_of_an_owner(client, make_member):
    owner, other = make_member("owner"), make_member("owner")
    old, recent = _minute(20), _minute(1)
    for seconds in (1.0, 2.0, 3.0):
        run = _run(owner, at=old, seconds=seconds)
    _llm_span(owner, run, at=old, tokens_in=100, tokens_out=20, cost="0.5")
    _run(owner, at=old, status="FAILED", error="internal error: ValueError: bad")
    _run(owner, at=recent, status="FAILED", error="LLM call to 'x' failed (rate_limit): slow down")
    _run(other, at=old)
    _llm_span(other, _run(other, at=recent), at=recent, tokens_in=7, tokens_out=1, cost="9")
    _roll_up(old)  # the beat rolled the old minute up; the recent one is read live

    client.force_login(owner.user)
    data = client.get("/dashboard/charts", {"window": "1h"}).json()
    assert data["bucket_seconds"] == 60 and len(data["times"]) == 60
    i, j = _at(data, old), _at(data, recent)
    assert data["runs"]["completed"][i] == 3 and data["runs"]["failed"][i] == 1 and data["runs"]["failed"][j] == 1
    assert data["runs"]["started"][i] == 4 and data["totals"]["started"] == 5 and data["totals"]["completed"] == 3
    assert data["duration_ms"]["p50"][i] == 2000 and data["duration_ms"]["p95"][i] == 2900
    assert data["duration_ms"]["p50"][j] is None
    assert [s["organization"] for s in data["usage"]["tokens"]] == [owner.organization.slug]
    assert data["usage"]["tokens"][0]["values"][i] == 120 and data["totals"]["tokens"] == 120
    assert data["totals"]["cost"] == 0.5  # the other organization's 9 USD is not here
    assert {f["error_class"]: f["count"] for f in data["failures"]} == {"ValueError": 1, "llm_rate_limit": 1}
    assert isinstance(data["platform"]["workers"], list) and len(data["platform"]["queue_depth"]) == 60


def test_points_equal_the_metrics_api_once_rolled_up(client, client_for, make_member):
    owner = make_member("owner")
    minutes = [_minute(30), _minute(12), _minute(0)]
    for n, when in enumerate(minutes):
        for _ in range(n + 1):
            _run(owner, at=when, seconds=0.5)
    _roll_up(*minutes)
    client.force_login(owner.user)
    charts = client.get("/dashboard/charts", {"window": "1h"}).json()
    api = client_for(owner)
    for metric, key in (("runs_completed", "completed"), ("runs_started", "started")):
        series = api.get("/api/v1/metrics", {"metric_name": metric, "period": "1h"}).json()["series"]
        points = {
            int(datetime.datetime.fromisoformat(p["timestamp"].replace("Z", "+00:00")).timestamp()): p["value"]
            for s in series
            for p in s["points"]
        }
        drawn = {t: v for t, v in zip(charts["times"], charts["runs"][key]) if v}
        assert drawn == {t: v for t, v in points.items() if v} and sum(drawn.values()) == 6


def test_staff_see_every_organization_split_and_can_narrow(client, make_member):
    a, b = make_member("owner"), make_member("owner")
    when = _minute(2)
    _llm_span(a, _run(a, at=when), at=when, tokens_in=10, tokens_out=0, cost="1")
    _llm_span(b, _run(b, at=when), at=when, tokens_in=30, tokens_out=5, cost="3")
    client.force_login(fast_user(is_staff=True))
    data = client.get("/dashboard/charts", {"window": "24h"}).json()
    assert data["bucket_seconds"] == 900 and data["organization_id"] is None
    assert data["totals"]["completed"] == 2
    by_org = {s["organization"]: sum(s["values"]) for s in data["usage"]["tokens"]}
    assert by_org == {a.organization.slug: 10, b.organization.slug: 35}
    assert [s["organization"] for s in data["usage"]["cost"]] == [b.organization.slug, a.organization.slug]
    narrowed = client.get("/dashboard/charts", {"window": "7d", "organization": a.organization.slug}).json()
    assert narrowed["bucket_seconds"] == 3600 and narrowed["totals"]["tokens"] == 10


def test_who_may_read_and_bad_windows(client, make_member):
    assert client.get("/dashboard/charts").status_code == 401
    client.force_login(make_member("developer").user)
    assert client.get("/dashboard/charts").status_code == 403
    client.force_login(make_member("owner").user)
    response = client.get("/dashboard/charts", {"window": "2h"})
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "window"


@pytest.mark.parametrize(
    "error, expected",
    [
        ("internal error: KeyError: 'x'", "KeyError"),
        ("LLM call to 'gpt' failed (auth): no key", "llm_auth"),
        ("monthly budget of 5 USD exceeded", "budget_exceeded"),
        ("lost with its worker after 3 attempts", "worker_lost"),
        ("step timed out", "timeout"),
        ("agent 'Broken' is disabled", "agent_disabled"),
        ("something odd", "other"),
    ],
)
def test_error_classes(error, expected):
    from apps.console.selectors_charts import error_class

    assert error_class(error) == expected
