"""The live dashboard in a real browser: Debian's headless chromium driven by Playwright, against a
real daphne process and a real Celery worker. Screenshots go to test-artifacts/console/.

Outside CI the test is skipped (with the reason) when chromium or Playwright is missing; in CI
(CI=true) that is a failure: `.ci/run` installs chromium.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import jwt_for
from tests.helpers import BASE_DIR, LiveServer, WorkerProcess

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

CHROMIUM = os.environ.get("KAI_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = BASE_DIR / "test-artifacts" / "console"
PASSWORD = "operator-pass-123"


def _browser_or_skip():
    problem = None
    if not Path(CHROMIUM).exists() and not shutil.which(CHROMIUM):
        problem = f"chromium is not installed at {CHROMIUM} (apt-get install -y chromium)"
    else:
        import importlib.util

        if importlib.util.find_spec("playwright") is None:
            problem = "the playwright package is not installed (pip install -e '.[test]')"
    if problem:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"browser test cannot run in CI: {problem}")
        print(f"SKIP browser test: {problem}")
        pytest.skip(problem)


def _start_run(server, token: str, crew_id: str) -> str:
    request = urllib.request.Request(
        f"{server.url}/api/v1/executions",
        method="POST",
        data=json.dumps({"crew_id": crew_id, "inputs": {"topic": "consoles"}}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=15) as response:
        assert response.status == 202
        return json.loads(response.read())["execution_id"]


def test_dashboard_shows_a_run_going_from_pending_to_completed_without_reload(make_member, monkeypatch):
    _browser_or_skip()
    from playwright.sync_api import sync_playwright

    from apps.accounts.models import User
    from apps.runs.models import Execution
    from tests.crews.conftest import make_crew

    owner = make_member("owner")
    crew = make_crew(owner, name="Console crew")
    staff = User.objects.create_user(email="operator@example.com", password=PASSWORD, is_staff=True, is_superuser=True)
    token = jwt_for(owner.user)["access_token"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # Playwright's sync API runs an event loop on this thread; the ORM calls below are plain reads.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

    server = LiveServer()
    worker = None
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--disable-background-networking"]
            )
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            errors = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            # log into the admin, then open the dashboard with the same session
            page.goto(f"{server.url}/admin/login/?next=/admin/")
            page.fill("input[name=username]", staff.email)
            page.fill("input[name=password]", PASSWORD)
            page.click("input[type=submit]")
            page.wait_for_url(f"{server.url}/admin/")
            page.goto(f"{server.url}/dashboard")
            page.wait_for_selector("#socket-state[data-state=live]", timeout=30_000)
            page.evaluate("window.__loadedOnce = true")
            page.screenshot(path=str(ARTIFACTS / "1-dashboard-live.png"), full_page=True)

            # a run started through the API appears (no worker yet: it waits PENDING) …
            execution_id = _start_run(server, token, str(crew.pk))
            row = f'#runs tr[data-run-id="{execution_id}"]'
            page.wait_for_selector(f'{row}[data-status="PENDING"]', timeout=30_000)
            assert owner.organization.slug in page.inner_text(row)
            page.screenshot(path=str(ARTIFACTS / "2-run-pending.png"), full_page=True)

            # … and turns COMPLETED once a worker picks it up, without a reload
            worker = WorkerProcess()
            page.wait_for_selector(f'{row}[data-status="COMPLETED"]', timeout=60_000)
            assert page.evaluate("window.__loadedOnce") is True, "the page was reloaded"
            assert page.inner_text(f"{row} [data-field=status]") == "COMPLETED"
            assert page.evaluate("window.kaiConsole.events") >= 2  # PENDING … COMPLETED over the socket
            # the panels follow: the worker is listed as healthy
            page.wait_for_function(
                "document.getElementById('count-workers').textContent.trim() !== '0'", timeout=20_000
            )
            page.screenshot(path=str(ARTIFACTS / "3-run-completed.png"), full_page=True)
            assert not errors, errors
            browser.close()
    finally:
        if worker is not None:
            worker.stop()
        server.stop()
    assert Execution.objects.get(pk=execution_id).status == "COMPLETED"
