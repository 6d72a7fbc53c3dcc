"""SQL compiled once per process (kai_platform.db.compiled, kai_platform.db.statements): the same
rows and statements as the ORM compiles each time."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import Value
from django.db.models.functions import Upper
from django.test.utils import CaptureQueriesContext

from apps.agents.models import Deployment
from apps.agents.services import agent_create, deployment_create
from apps.audit.models import AuditEvent
from kai_platform.db import statements
from kai_platform.db.compiled import CompiledRead

pytestmark = pytest.mark.django_db


def _fields(obj) -> dict:
    return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}


def test_a_compiled_read_gives_the_querysets_instances_and_related_objects(member):
    agent = agent_create(
        organization=member.organization, actor=member.user, data={"name": "A", "llm": "builtin", "config": {"k": [1]}}
    )
    deployment, _key = deployment_create(
        organization=member.organization, actor=member.user, agent=agent, name="d", channels=["api"]
    )
    read = CompiledRead(
        lambda prefix: (
            Deployment.objects.select_related("organization", "agent__organization", "created_by")
            .filter(key_prefix=prefix)
            .order_by("pk")[:1]
        )
    )
    for _ in range(2):  # compiled by the first call, reused by the second
        got = read.first(deployment.key_prefix)
        want = Deployment.objects.select_related("organization", "agent__organization", "created_by").get(
            pk=deployment.pk
        )
        pairs = [(got, want), (got.organization, want.organization), (got.agent, want.agent)]
        pairs += [(got.agent.organization, want.agent.organization), (got.created_by, want.created_by)]
        for mine, theirs in pairs:
            assert type(mine) is type(theirs) and _fields(mine) == _fields(theirs)
            assert mine._state.adding is False and mine._state.db == "default"
        assert got.agent.config == {"k": [1]}
        with CaptureQueriesContext(connection) as queries:
            related = [got.organization, got.agent.organization, got.created_by]
        assert len(queries) == 0 and all(related)
    assert read.first("no-such-prefix") is None and read.all("no-such-prefix") == []


def test_a_compiled_read_refuses_an_argument_the_sql_would_not_carry_unchanged(member):
    read = CompiledRead(lambda name: Deployment.objects.filter(name=name.upper()))  # not the argument itself
    with pytest.raises(ValueError, match="unchanged"):
        read.first("d")
    read = CompiledRead(lambda pk: Deployment.objects.filter(pk=pk))  # a uuid lookup converts its value
    with pytest.raises(ValidationError):
        read.first("0b9c8a3e-0000-4000-8000-000000000000")


def test_insert_statement_is_the_orms_insert_compiled_once(member):
    rows = [
        AuditEvent(organization_id=member.organization.pk, action="x.y", after={"k": 1}),
        AuditEvent(organization_id=member.organization.pk, action="x.z", after={"k": 2}),
    ]
    for row in rows:
        sql, params = statements.insert_statement(row)
        fields, cached = statements._INSERTS[AuditEvent]
        assert cached == sql
        compiled_sql, compiled_params = statements._compiled_insert(row, fields)
        assert sql == compiled_sql and len(params) == len(compiled_params)
        statements.execute_together([(sql, params)])
    assert sorted(AuditEvent.objects.filter(action__startswith="x.").values_list("action", "after")) == [
        ("x.y", {"k": 1}),
        ("x.z", {"k": 2}),
    ]
    # a value that is an expression is compiled as the ORM compiles it
    expression_row = AuditEvent(organization_id=member.organization.pk, action="x.w", after={})
    expression_row.object_id = Upper(Value("abc"))
    sql, params = statements.insert_statement(expression_row)
    assert sql != statements._INSERTS[AuditEvent][1]
    statements.execute_together([(sql, params)])
    assert AuditEvent.objects.get(action="x.w").object_id == "ABC"
