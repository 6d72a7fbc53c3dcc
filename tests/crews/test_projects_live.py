"""CrewAI projects end to end: a project zip imported over HTTP from a real server runs unchanged
to COMPLETED on a real worker (builtin provider); the import/export/debug/execution routes hold
their OpenAPI document under schemathesis."""

from __future__ import annotations

import time

import pytest
import requests

from apps.runs.models import Execution
from tests.crews.conftest import wait_for
from tests.crews.projects import zip_project
from tests.helpers import LiveServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ROUTES = (
    "POST /api/v1/crews/import",
    "GET /api/v1/crews/{id}/export",
    "POST /api/v1/crews/debug",
    "POST /api/v1/executions",
)


@pytest.fixture
def server(transactional_db):
    server = LiveServer(KAI_RATELIMIT_ENABLE="false")
    yield server
    server.stop()


def _owner_token(server) -> str:
    stamp = time.time_ns()
    email = f"crewai{stamp}@example.com"
    registered = requests.post(
        f"{server.url}/api/v1/auth/register",
        timeout=15,
        json={"email": email, "password": "correct-horse-9", "org_name": f"Org {stamp}"},
    )
    assert registered.status_code == 201, registered.text
    return requests.post(
        f"{server.url}/api/v1/auth/login", json={"email": email, "password": "correct-horse-9"}, timeout=15
    ).json()["access_token"]


@pytest.mark.parametrize(
    "project, only, inputs",
    [
        # CrewAI's `crewai create crew` template: just its two YAML files, copied unchanged
        ("latest_ai_development", ("agents.yaml", "tasks.yaml"), {"topic": "AI LLMs", "current_year": "2026"}),
        # a YAML-only folder whose crew.jsonc makes it hierarchical (tasks name no agent)
        ("trip_planner", (), {"origin": "Lisbon", "cities": "Paris, Rome", "interests": "food"}),
    ],
)
def test_a_yaml_only_project_imports_and_runs_unchanged_to_completed(server, runs_worker, project, only, inputs):
    headers = {"Authorization": f"Bearer {_owner_token(server)}"}
    imported = requests.post(
        f"{server.url}/api/v1/crews/import",
        headers=headers,
        timeout=30,
        files={"file": (f"{project}.zip", zip_project(project, only=only), "application/zip")},
    )
    assert imported.status_code == 201, imported.text
    crew_id = imported.json()["id"]
    missing = requests.post(
        f"{server.url}/api/v1/executions", headers=headers, timeout=30, json={"crew_id": crew_id, "inputs": {}}
    )
    assert missing.status_code == 400 and all(
        "{" + name + "}" in missing.json()["errors"][0]["message"] for name in inputs
    )
    started = requests.post(
        f"{server.url}/api/v1/executions", headers=headers, timeout=30, json={"crew_id": crew_id, "inputs": inputs}
    )
    assert started.status_code == 202, started.text
    pk = started.json()["execution_id"]
    execution = wait_for(
        lambda: (e := Execution.objects.get(pk=pk)).is_terminal and e, 120, message="the imported crew's run to end"
    )
    assert execution.status == "COMPLETED", execution.error
    assert execution.result and "{" + next(iter(inputs)) + "}" not in str(execution.result)
    exported = requests.get(f"{server.url}/api/v1/crews/{crew_id}/export", headers=headers, timeout=30)
    assert exported.status_code == 200 and exported.headers["Content-Type"] == "application/zip"


def test_schemathesis_checks_hold_for_the_crew_project_routes(server):
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.generation import GenerationMode
    from schemathesis.specs.openapi import checks as oc

    token = _owner_token(server)
    schema = schemathesis.openapi.from_url(f"{server.url}/api-openapi.json")
    operations = [
        op for op in (r.ok() for r in schema.get_all_operations()) if f"{op.method.upper()} {op.path}" in ROUTES
    ]
    assert len(operations) == len(ROUTES)
    checks = [
        not_a_server_error,
        oc.status_code_conformance,
        oc.content_type_conformance,
        oc.response_headers_conformance,
        oc.response_schema_conformance,
        oc.negative_data_rejection,
        oc.positive_data_acceptance,
    ]
    failures = []
    for operation in operations:
        label = f"{operation.method.upper()} {operation.path}"
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=8,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
                phases=[Phase.generate],
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case):
                response = case.call(headers={"Authorization": f"Bearer {token}"}, timeout=30)
                selected = checks
                if response.status_code in (400, 404) and label != "GET /api/v1/crews/{id}/export":
                    # a schema-valid body can still be a project/crew this platform refuses (docs/conformance.md)
                    selected = [c for c in checks if c is not oc.positive_data_acceptance]
                try:
                    case.validate_response(response, checks=selected)
                except (Exception, BaseExceptionGroup) as exc:  # collected, reported together
                    failures.append(f"{mode.value} {label}: {str(exc)[:600]}")

            run()
    assert not failures, "\n\n".join(failures[:10])
