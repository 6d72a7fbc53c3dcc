"""The role matrix of DESIGN §5 / seed 000, as data: each row a route, a method, a body and
the roles allowed. Apps add their rows here as their routes land."""

import pytest

from kai_platform.tenancy.roles import ADMIN_ROLES, ALL_ROLES, HUMAN_ROLES, Role

pytestmark = pytest.mark.django_db

CREW_AGENTS = "researcher:\n  role: Researcher\n  goal: Find facts\n  backstory: Curious.\n"
CREW_TASKS = "research_task:\n  description: Research\n  expected_output: Facts\n  agent: researcher\n"

MATRIX = [
    # (method, path, body, allowed roles, success status)
    ("get", "/api/v1/config/system", None, ALL_ROLES, 200),
    ("post", "/api/v1/config/system", {"settings": {"theme": "dark"}}, ADMIN_ROLES, 200),
    ("get", "/api/v1/config/user", None, ALL_ROLES, 200),
    ("post", "/api/v1/config/user", {"settings": {"tz": "UTC"}}, ALL_ROLES, 200),
    ("get", "/api/v1/events", None, ALL_ROLES, 200),
    ("get", "/api/v1/auth/tokens", None, ALL_ROLES, 200),
    ("post", "/api/v1/auth/tokens", {"name": "k"}, ALL_ROLES, 201),
    ("get", "/api/v1/auth/me", None, ALL_ROLES, 200),
    ("get", "/api/v1/auth/session", None, ALL_ROLES, 200),
    ("get", "/api/v1/audit", None, ADMIN_ROLES, 200),
    # crews app (run engine)
    ("get", "/api/v1/crews", None, ALL_ROLES, 200),
    ("post", "/api/v1/crews", {"name": "c", "agents_yaml": CREW_AGENTS, "tasks_yaml": CREW_TASKS}, HUMAN_ROLES, 201),
    ("post", "/api/v1/crews/debug", {"agents_yaml": CREW_AGENTS, "tasks_yaml": CREW_TASKS}, ALL_ROLES, 200),
    (
        "post",
        "/api/v1/crews/import",
        {"name": "c", "agents_yaml": CREW_AGENTS, "tasks_yaml": CREW_TASKS},
        HUMAN_ROLES,
        201,
    ),
    ("get", "/api/v1/tasks", None, ALL_ROLES, 200),
    ("post", "/api/v1/tasks", {"name": "t", "description": "d"}, HUMAN_ROLES, 201),
    ("get", "/api/v1/orchestrations", None, ALL_ROLES, 200),
    ("post", "/api/v1/orchestrations", {"name": "o", "pattern": "parallel"}, HUMAN_ROLES, 201),
    ("get", "/api/v1/executions", None, ALL_ROLES, 200),
    ("post", "/api/v1/executions", {"agents_yaml": CREW_AGENTS, "tasks_yaml": CREW_TASKS}, ALL_ROLES, 202),
    (
        "post",
        "/api/v1/executions/generate-name",
        {"agents_yaml": CREW_AGENTS, "tasks_yaml": CREW_TASKS},
        ALL_ROLES,
        200,
    ),
    ("get", "/api/v1/execution-history", None, ALL_ROLES, 200),
    ("get", "/api/v1/traces", None, ALL_ROLES, 200),
    ("get", "/api/v1/usage", None, ALL_ROLES, 200),
    ("get", "/api/v1/runtime/status", None, ALL_ROLES, 200),
    ("get", "/api/v1/runtime/agents", None, ALL_ROLES, 200),
    # system management and observability (apps.system)
    ("get", "/api/v1/system/architecture", None, ALL_ROLES, 200),
    ("get", "/api/v1/system/config", None, ALL_ROLES, 200),
    ("put", "/api/v1/system/config", {"settings": {"theme": "dark"}}, ADMIN_ROLES, 200),
    ("post", "/api/v1/system/modify", {"type": "system_setting", "changes": {"theme": "dark"}}, ADMIN_ROLES, 201),
    ("post", "/api/v1/system/rollback", {}, ADMIN_ROLES, 404),  # allowed, but nothing to roll back yet
    ("get", "/api/v1/system/modifications", None, ALL_ROLES, 200),
    ("get", "/api/v1/system/performance", None, ALL_ROLES, 200),
    ("get", "/api/v1/system/logs", None, ADMIN_ROLES | {Role.DEVELOPER}, 200),
    ("get", "/api/v1/metrics", {"metric_name": "api_requests"}, ALL_ROLES, 200),
    ("get", "/api/v1/runtime/metrics", None, ALL_ROLES, 200),
    ("post", "/api/v1/agent-generation/generate", {"description": "a research agent"}, HUMAN_ROLES, 200),
    ("post", "/api/v1/task-generation/generate", {"description": "a task for triage"}, HUMAN_ROLES, 200),
    ("post", "/api/v1/crew-generation/generate", {"description": "a crew for support"}, HUMAN_ROLES, 200),
    # workflows app
    ("get", "/api/v1/workflows", None, ALL_ROLES, 200),
    ("post", "/api/v1/workflows/validate", {"steps": []}, ALL_ROLES, 200),
    ("get", "/api/v1/workflow-runs", None, ALL_ROLES, 200),
    # approvals and outbound webhooks
    ("get", "/api/v1/approvals", None, ALL_ROLES, 200),
    ("get", "/api/v1/webhooks", None, ALL_ROLES, 200),
    (
        "post",
        "/api/v1/webhooks",
        {"url": "https://93.184.216.34/hook", "events": ["execution.failed"]},
        ADMIN_ROLES,
        201,
    ),
    ("get", "/api/v1/webhook-deliveries", None, ALL_ROLES, 200),
    # JSON Schemas for structured output (apps.schemas)
    ("get", "/api/v1/schemas", None, ALL_ROLES, 200),
    ("post", "/api/v1/schemas", {"name": "s", "schema": {"type": "object"}}, HUMAN_ROLES, 201),
    # voice and step-up: every member (a machine identity too) speaks commands and reads its step-up state
    ("post", "/api/v1/voice/process", {"text_fallback": "status of agent 1"}, ALL_ROLES, 200),
    ("get", "/api/v1/voice/commands", None, ALL_ROLES, 200),
    ("get", "/api/v1/auth/step-up", None, ALL_ROLES, 200),
    # knowledge (apps.knowledge): users read and search, developers and up write
    ("get", "/api/v1/knowledge-bases", None, ALL_ROLES, 200),
    ("post", "/api/v1/knowledge-bases", {"name": "kb"}, ADMIN_ROLES | {Role.DEVELOPER}, 201),
    ("get", "/api/v1/knowledge-graph/entities", None, ALL_ROLES, 200),
    (
        "post",
        "/api/v1/knowledge-graph/entities",
        {"type": "concept", "label": "Otter"},
        ADMIN_ROLES | {Role.DEVELOPER},
        201,
    ),
    ("get", "/api/v1/knowledge-graph/relationships", None, ALL_ROLES, 200),
]


@pytest.mark.parametrize("role", list(Role), ids=str)
@pytest.mark.parametrize("method,path,body,allowed,success", MATRIX, ids=[f"{m} {p}" for m, p, *_ in MATRIX])
@pytest.mark.parametrize("via", ["jwt", "api_key"])
def test_role_matrix(make_member, client_for, role, method, path, body, allowed, success, via):
    member = make_member(role)
    response = getattr(client_for(member, via=via), method)(path, body, format="json")
    expected = success if role in allowed else 403
    assert response.status_code == expected, (role, method, path, response.content[:300])


def test_system_config_changes_are_visible_to_members_and_merged(make_member, client_for):
    admin = make_member("admin")
    user = make_member("user", organization=admin.organization)
    client = client_for(admin)
    client.post("/api/v1/config/system", {"settings": {"a": 1, "b": 2}}, format="json")
    merged = client.post("/api/v1/config/system", {"settings": {"b": None, "c": 3}}, format="json").json()
    assert merged["settings"] == {"a": 1, "c": 3}
    assert client_for(user).get("/api/v1/config/system").json()["settings"] == {"a": 1, "c": 3}


def test_user_config_is_per_member(make_member, client_for):
    a = make_member()
    b = make_member("developer", organization=a.organization)
    client_for(a).post("/api/v1/config/user", {"settings": {"editor": "vim"}}, format="json")
    assert client_for(b).get("/api/v1/config/user").json()["settings"] == {}
    assert client_for(a).get("/api/v1/config/user").json()["settings"] == {"editor": "vim"}


def test_config_body_must_be_an_object(make_member, client_for):
    response = client_for(make_member("admin")).post("/api/v1/config/system", {"settings": [1]}, format="json")
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "settings"


def test_a_user_without_any_organization_is_refused_tenant_routes():
    from rest_framework.test import APIClient

    from apps.accounts.services import auth_issue_tokens
    from tests.factories import UserFactory

    lonely = UserFactory()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {auth_issue_tokens(user=lonely)['access_token']}")
    assert client.get("/api/v1/auth/me").status_code == 200
    response = client.get("/api/v1/events")
    assert response.status_code == 403 and "not a member" in response.json()["detail"]
