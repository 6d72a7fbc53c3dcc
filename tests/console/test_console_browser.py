"""The console's charts, run waterfall and workflow graph in Debian's headless chromium (Playwright)
against a real daphne process and a real Celery worker (builtin provider), at 1,024 px.

A staff operator signs in; an owner runs a crew and a workflow through the API. Then: the runs
chart's points equal the chart endpoint's and, once rolled up, GET /api/v1/metrics'; the crew
run's waterfall lists its model calls in the API trace's order with their token counts; the
workflow run's graph colours each step by its final state (live while it runs) and a step opens
its own run. Page weight and time to first chart go to test-artifacts/console/metrics.json.
"""

from __future__ import annotations

import datetime
import json
import time
import urllib.request

import pytest

from tests.conftest import jwt_for
from tests.console.test_dashboard_browser import ARTIFACTS, CHROMIUM, _browser_or_skip
from tests.helpers import LiveServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PASSWORD = "operator-pass-456"
STATE_FILL = {"completed": "rgb(220, 245, 230)", "failed": "rgb(253, 228, 225)", "skipped": "rgb(243, 244, 246)"}


def _api(server, token, method, path, body=None):
    request = urllib.request.Request(
        f"{server.url}/api/v1/{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        return json.loads(response.read())


def _wait(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _setup(make_member):
    from apps.accounts.models import User
    from apps.agents.models import Agent
    from tests.crews.conftest import make_crew
    from tests.workflows.conftest import definition, make_agent, make_workflow, step

    owner = make_member("owner", plan="enterprise")
    crew = make_crew(owner, name="Browser crew")
    good = make_agent(owner, name="Good")
    bad = make_agent(owner, name="Broken")
    Agent.objects.filter(pk=bad.pk).update(is_active=False)
    flow = make_workflow(
        owner,
        definition(
            [
                step("a", good),
                step("b", good, depends_on=["a"], llm_params={"latency_ms": 4000}),
                step("broken", bad, depends_on=["a"]),
                step("c", good, depends_on=["b"], condition="steps.a.failed"),
            ],
            error_handling={"strategy": "continue"},
        ),
        name="Browser flow",
    )
    staff = User.objects.create_user(email="charts@example.com", password=PASSWORD, is_staff=True, is_superuser=True)
    return owner, crew, flow, staff


def _roll_up_everything(since):
    from apps.system.tasks import _save, rollup_minute

    minute = int(since.timestamp()) // 60 * 60
    while minute <= time.time():
        _save(rollup_minute(minute))
        minute += 60


def _metric_points(server, token, name):
    series = _api(server, token, "GET", f"metrics?metric_name={name}&period=1h")["series"]
    return {
        int(datetime.datetime.fromisoformat(p["timestamp"].replace("Z", "+00:00")).timestamp()): p["value"]
        for s in series
        for p in s["points"]
        if p["value"]
    }


def test_charts_waterfall_and_workflow_graph(make_member, celery_worker_process, monkeypatch):
    _browser_or_skip()
    from playwright.sync_api import sync_playwright

    from apps.runs.models import Execution

    owner, crew, flow, staff = _setup(make_member)
    token = jwt_for(owner.user)["access_token"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "metrics.json").unlink(missing_ok=True)
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's loop runs on this thread
    server = LiveServer()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--disable-background-networking"]
            )
            page = browser.new_page(viewport={"width": 1024, "height": 900})
            errors, offsite = [], []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("request", lambda r: offsite.append(r.url) if not r.url.startswith(server.url) else None)

            page.goto(f"{server.url}/dashboard/login")
            page.fill("input[name=username]", staff.email)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{server.url}/dashboard")

            started = datetime.datetime.now(datetime.UTC)
            crew_run = _api(
                server,
                token,
                "POST",
                "executions",
                {"crew_id": str(crew.pk), "inputs": {"topic": "charts"}, "params": {"latency_ms": 2000}},
            )
            _check_live_waterfall(page, server, crew_run["execution_id"])
            wf_run = _api(server, token, "POST", f"workflows/{flow.pk}/execute", {"inputs": {}})
            _check_live_workflow_graph(page, server, wf_run)
            _wait(lambda: Execution.objects.get(pk=crew_run["execution_id"]).is_terminal, 60, "the crew run")
            _check_charts(page, server, token, started)
            _check_charts_are_live(page, server, token, crew)
            _check_waterfall(page, server, token, crew_run["execution_id"])
            _check_final_workflow_graph(page, server, token, wf_run)
            _check_workflow_definition(page, server, flow)
            page.goto(f"{server.url}/dashboard/crews/{crew.pk}")
            page.wait_for_selector("#graph g.edge.context")
            assert page.locator("#graph g.edge.context").count() == 2
            _assert_fits(page)
            page.screenshot(path=str(ARTIFACTS / "crew-graph.png"), full_page=True)
            assert not errors, errors
            assert not offsite, offsite  # no CDN, no network beyond the platform
            browser.close()
    finally:
        server.stop()


def _check_live_waterfall(page, server, execution_id):
    """A running crew's model calls appear on its page while it runs (2 s each), then it ends."""
    page.goto(f"{server.url}/dashboard/run/{execution_id}")
    page.evaluate("window.__loadedOnce = true")
    page.wait_for_function(
        """() => document.querySelectorAll('#waterfall .wf-row[data-kind="llm"]').length >= 1
        && document.getElementById('run-header').dataset.status === 'RUNNING'""",
        timeout=30_000,
    )
    page.screenshot(path=str(ARTIFACTS / "run-waterfall-live.png"), full_page=True)
    page.wait_for_selector("#run-header[data-status=COMPLETED]", timeout=60_000)
    assert page.locator('#waterfall .wf-row[data-kind="llm"]').count() == 3
    assert page.evaluate("window.__loadedOnce") is True


def _check_workflow_definition(page, server, flow):
    """The workflow's own page draws its DAG from the definition: steps, dependencies, conditions."""
    page.goto(f"{server.url}/dashboard/workflows/{flow.pk}")
    page.wait_for_selector("#graph g.node")
    assert sorted(page.eval_on_selector_all("#graph g.node", "ns => ns.map(n => n.dataset.stepId)")) == [
        "a",
        "b",
        "broken",
        "c",
    ]
    edges = page.eval_on_selector_all(
        "#graph g.edge",
        "es => es.map(e => [e.dataset.source, e.dataset.target, "
        "e.querySelector('text') ? e.querySelector('text').textContent : ''])",
    )
    assert sorted(edges) == [["a", "b", ""], ["a", "broken", ""], ["b", "c", "steps.a.failed"]]
    assert page.locator("#graph g.node[data-state]").count() == 0  # a definition has no state
    _assert_fits(page)
    page.screenshot(path=str(ARTIFACTS / "workflow-graph.png"), full_page=True)


def _check_live_workflow_graph(page, server, wf_run):
    """While the slow step runs, the graph shows it active and its dependency completed; it then
    turns completed without a reload."""
    page.goto(f"{server.url}/dashboard/run/{wf_run['execution_id']}")
    page.evaluate("window.__loadedOnce = true")
    graph = "#workflow-graph"
    page.wait_for_selector(f'{graph} g.node[data-step-id="b"][data-state="active"]', timeout=30_000)
    assert page.get_attribute(f'{graph} g.node[data-step-id="a"]', "data-state") == "completed"
    page.screenshot(path=str(ARTIFACTS / "workflow-run-live.png"), full_page=True)
    page.wait_for_selector(f'{graph} g.node[data-step-id="b"][data-state="completed"]', timeout=30_000)
    page.wait_for_selector("#run-header:not([data-status=RUNNING])", timeout=30_000)
    assert page.evaluate("window.__loadedOnce") is True and page.evaluate("window.kaiRun.polls") >= 2


def _check_charts(page, server, token, started):
    _roll_up_everything(started - datetime.timedelta(minutes=1))
    page.goto(f"{server.url}/dashboard")
    page.wait_for_function("window.kaiCharts && window.kaiCharts.fetches >= 1 && window.kaiCharts.plots.runs")
    first_chart_ms = page.evaluate("window.kaiCharts.firstChartMs")
    assert first_chart_ms is not None
    drawn = page.evaluate("""() => { const d = window.kaiCharts.plots.runs.data;
        return { times: d[0], started: d[1], completed: d[2], failed: d[3] }; }""")
    endpoint = page.evaluate("""async () => (await (await fetch('/dashboard/charts?window=1h')).json())""")
    chart = {t: v for t, v in zip(drawn["times"], drawn["completed"]) if v}
    # by timestamp: the window may have slid a minute between the page's fetch and this one
    assert chart == {t: v for t, v in zip(endpoint["times"], endpoint["runs"]["completed"]) if v}
    api = _metric_points(server, token, "runs_completed")
    assert chart == {t: v for t, v in api.items() if t >= drawn["times"][0]}, (chart, api)
    # crew + workflow step a + b + the workflow run itself when it completed
    assert sum(chart.values()) >= 3
    started_api = _metric_points(server, token, "runs_started")
    assert {t: v for t, v in zip(drawn["times"], drawn["started"]) if v} == started_api
    failed = page.evaluate(
        "() => [...document.querySelectorAll('#chart-failures li')].map(li => li.dataset.errorClass)"
    )
    assert endpoint["totals"]["failed"] >= 1 and "agent_disabled" in failed  # the broken step
    _assert_fits(page)
    page.screenshot(path=str(ARTIFACTS / "dashboard-charts.png"), full_page=True)
    _record_weight(page, "dashboard", first_chart_ms=first_chart_ms)


def _record_weight(page, name, **extra):
    """KB of JS and CSS the page loaded (uncompressed), kept in test-artifacts/console/metrics.json."""
    files = page.evaluate("""() => performance.getEntriesByType('resource').filter(r => /\\.(js|css)(\\?|$)/.test(r.name))
        .map(r => ({ name: r.name.split('/static/')[1], bytes: r.decodedBodySize }))""")
    path = ARTIFACTS / "metrics.json"
    metrics = json.loads(path.read_text()) if path.exists() else {}
    metrics[name] = {
        "js_kb": round(sum(f["bytes"] for f in files if f["name"].endswith(".js")) / 1024, 1),
        "css_kb": round(sum(f["bytes"] for f in files if f["name"].endswith(".css")) / 1024, 1),
        **extra,
        "files": files,
    }
    path.write_text(json.dumps(metrics, indent=2))
    print(f"console {name}: {metrics[name]['js_kb']} KB JS, {metrics[name]['css_kb']} KB CSS {extra}")


def _assert_fits(page):
    """At 1,024 px no panel (table, chart, graph) is wider than its box: nothing is cut off."""
    cut = page.evaluate("""() => [...document.querySelectorAll('.panel')].filter(p => p.scrollWidth > p.clientWidth + 1)
        .map(p => p.querySelector('h2, h1') ? p.querySelector('h2, h1').textContent : p.id)""")
    assert cut == [], cut


def _check_charts_are_live(page, server, token, crew):
    """A run that ends while the dashboard is open reaches the charts without a reload (the console
    socket reports it; the page re-reads the chart endpoint)."""
    page.evaluate("window.__loadedOnce = true")
    before = page.evaluate("window.kaiCharts.data.totals.completed")
    _api(server, token, "POST", "executions", {"crew_id": str(crew.pk), "inputs": {"topic": "live"}})
    page.wait_for_function(f"window.kaiCharts.data.totals.completed > {before}", timeout=30_000)
    assert page.evaluate("window.__loadedOnce") is True
    drawn = page.evaluate("window.kaiCharts.plots.runs.data[2].reduce((a, b) => a + b, 0)")
    assert drawn == before + 1


def _check_waterfall(page, server, token, execution_id):
    page.goto(f"{server.url}/dashboard/run/{execution_id}")
    page.wait_for_selector('#waterfall .wf-row[data-kind="llm"]')
    rows = page.evaluate("""() => [...document.querySelectorAll('#waterfall .wf-row[data-kind="llm"]')]
        .map(r => ({ id: r.dataset.spanId, in: +r.dataset.tokensIn, out: +r.dataset.tokensOut, text: r.innerText }))""")
    trace = _api(server, token, "GET", f"execution-trace/{execution_id}")
    calls = [s for s in trace["spans"] if s["kind"] == "llm"]  # the API's order: by start
    assert [r["id"] for r in rows] == [s["span_id"] for s in calls] and len(calls) >= 3
    assert [(r["in"], r["out"]) for r in rows] == [(s["tokens_in"], s["tokens_out"]) for s in calls]
    for row, span in zip(rows, calls):
        assert f"{span['tokens_in']} → {span['tokens_out']} tok" in row["text"]
    nested = page.evaluate("""() => [...document.querySelectorAll('#waterfall .wf-row[data-kind="llm"] .wf-name')]
        .every(n => parseInt(n.style.paddingLeft) > 0)""")
    assert nested  # model calls sit under their agent/task
    page.click(f'#waterfall .wf-row[data-span-id="{rows[0]["id"]}"]')
    page.wait_for_selector(f'[data-detail-for="{rows[0]["id"]}"]')
    assert page.locator("#waterfall .wf-logs li").count() >= 1  # log lines beside their spans
    _assert_fits(page)
    _record_weight(page, "run page")
    page.screenshot(path=str(ARTIFACTS / "run-waterfall.png"), full_page=True)


def _check_final_workflow_graph(page, server, token, wf_run):
    run = _api(server, token, "GET", f"workflow-runs/{wf_run['run_id']}")
    states = {s["step_id"]: s["state"] for s in run["steps"]}
    assert states == {"a": "completed", "b": "completed", "broken": "failed", "c": "skipped"}, states
    page.goto(f"{server.url}/dashboard/run/{wf_run['execution_id']}")
    page.wait_for_selector("#workflow-graph g.node")
    for step_id, state in states.items():
        node = f'#workflow-graph g.node[data-step-id="{step_id}"]'
        assert page.get_attribute(node, "data-state") == state
        assert page.evaluate(f"getComputedStyle(document.querySelector('{node} rect')).fill") == STATE_FILL[state]
    assert page.locator('#waterfall .wf-row[data-kind="step"]').count() == 3  # a, b, broken to scale
    _assert_fits(page)
    page.screenshot(path=str(ARTIFACTS / "workflow-run-graph.png"), full_page=True)
    step_a = next(s for s in run["steps"] if s["step_id"] == "a")
    page.click('#workflow-graph g.node[data-step-id="a"]')
    page.wait_for_url(f"{server.url}/dashboard/run/{step_a['execution_id']}")
    page.wait_for_selector('#waterfall .wf-row[data-kind="llm"]')
