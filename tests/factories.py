"""Factories for tests. ``make_tenant_object`` builds a saved row of any tenant model so the
project-wide tests (isolation, audit) cover new models without new code; register a factory
in ``TENANT_FACTORIES`` when a model needs more than generic values."""

from __future__ import annotations

import datetime
import decimal
import uuid
from collections.abc import Callable

import factory
from django.db import models
from django.utils import timezone

from apps.accounts.models import Membership, Organization, User
from kai_platform.tenancy.roles import Role

PASSWORD = "correct-horse-battery-9"


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    name = factory.Sequence(lambda n: f"Org {n}")
    slug = factory.Sequence(lambda n: f"org-{n}-{uuid.uuid4().hex[:6]}")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}-{uuid.uuid4().hex[:6]}@example.com")
    full_name = factory.Faker("name")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    organization = factory.SubFactory(OrganizationFactory)
    role = Role.OWNER


# --- generic tenant objects --------------------------------------------------------------------

TENANT_FACTORIES: dict[type[models.Model], Callable] = {}


def tenant_factory(model):
    def register(fn):
        TENANT_FACTORIES[model] = fn
        return fn

    return register


def is_tenant_model(model) -> bool:
    try:
        field = model._meta.get_field("organization")
    except Exception:
        return False
    return field.is_relation and field.related_model is Organization


def _value_for(field: models.Field, organization, user):
    if field.is_relation:
        related = field.related_model
        if related is Organization:
            return organization
        if related is User:
            return user
        if is_tenant_model(related):
            return make_tenant_object(related, organization, user)
        return None
    if field.choices:
        return field.choices[0][0]
    token = uuid.uuid4().hex
    if isinstance(field, models.EmailField):
        return f"{token[:10]}@example.com"
    if isinstance(field, models.URLField):
        return "https://example.com/hook"
    if isinstance(field, models.SlugField):
        return f"s-{token[: (field.max_length or 50) - 2]}"
    if isinstance(field, (models.CharField, models.TextField)):
        return f"x{token}"[: field.max_length or 64]
    if isinstance(field, models.BooleanField):
        return False
    if isinstance(
        field,
        (
            models.IntegerField,
            models.BigIntegerField,
            models.SmallIntegerField,
            models.PositiveIntegerField,
            models.PositiveSmallIntegerField,
        ),
    ):
        return 1
    if isinstance(field, models.FloatField):
        return 1.0
    if isinstance(field, models.DecimalField):
        return decimal.Decimal("1")
    if isinstance(field, models.JSONField):
        return {}
    if isinstance(field, models.DateTimeField):
        return timezone.now()
    if isinstance(field, models.DateField):
        return datetime.date.today()
    if isinstance(field, models.UUIDField):
        return uuid.uuid4()
    return None


def make_tenant_object(model, organization, user):
    if model in TENANT_FACTORIES:
        return TENANT_FACTORIES[model](organization=organization, user=user)
    kwargs = {}
    for field in model._meta.concrete_fields:
        if field.primary_key or field.name == "created_by":
            continue
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            continue
        if field.name != "organization" and (field.has_default() or field.null):
            continue
        value = _value_for(field, organization, user)
        if value is not None:
            kwargs[field.attname if field.is_relation and not isinstance(value, models.Model) else field.name] = value
    instance = model(**kwargs)
    if any(f.name == "created_by" for f in model._meta.concrete_fields):
        instance.created_by = user
    instance.save()
    return instance


def _stored_file(*, organization, user):
    from django.core.files.base import ContentFile

    from apps.files.services import file_store

    return file_store(organization=organization, user=user, upload=ContentFile(b"hello kai\n", name="hello.txt"))


def _register_app_factories():
    from django.apps import apps

    if apps.is_installed("apps.files"):
        from apps.files.models import StoredFile

        TENANT_FACTORIES.setdefault(StoredFile, _stored_file)


def _sso_connection(*, organization, user):
    """An organization has at most one SSO connection: sweeps that ask for several get that one."""
    from apps.sso.models import SSOConnection
    from apps.sso.services import connection_create

    existing = SSOConnection.objects.for_org(organization).first()
    return existing or connection_create(
        organization=organization,
        actor=user,
        data={
            "protocol": "oidc",
            "issuer_url": "https://idp.example.com",
            "client_id": "kai",
            "client_secret": "secret",
        },
    )


def _register_app_factories_sso():
    from django.apps import apps

    if apps.is_installed("apps.sso"):
        from apps.sso.models import SSOConnection

        TENANT_FACTORIES.setdefault(SSOConnection, _sso_connection)


_register_app_factories()
_register_app_factories_sso()


# --- agents app factories ----------------------------------------------------------------------
def _register_agents_factories():
    from django.apps import apps

    if not apps.is_installed("apps.agents"):
        return
    from apps.agents import models as agent_models
    from apps.agents import services as agent_services

    def agent(*, organization, user, **overrides):
        data = {"name": f"Agent {uuid.uuid4().hex[:8]}", "role": "Tester", "goal": "Answer", **overrides}
        return agent_services.agent_create(organization=organization, actor=user, data=data)

    def agent_version(*, organization, user):
        return agent(organization=organization, user=user).versions.get()

    def agent_memory(*, organization, user):
        return agent_services.memory_store(
            agent=agent(organization=organization, user=user),
            actor=user,
            memory_type="note",
            content={"text": "remember"},
            tags=["t"],
            ttl=None,
        )

    def credential(*, organization, user):
        return agent_services.credential_create(
            organization=organization,
            actor=user,
            name=f"cred-{uuid.uuid4().hex[:8]}",
            service_name="openai",
            value="sk-test-" + uuid.uuid4().hex,
        )

    def provider(*, organization, user):
        return agent_services.provider_create(
            organization=organization,
            actor=user,
            data={"name": f"prov-{uuid.uuid4().hex[:8]}", "provider_type": "builtin", "default_model": "builtin"},
        )

    def model_config(*, organization, user):
        return agent_services.model_config_create(
            organization=organization,
            actor=user,
            data={
                "name": f"model-{uuid.uuid4().hex[:8]}",
                "provider": provider(organization=organization, user=user),
                "provider_type": "builtin",
                "model": "builtin",
            },
        )

    def deployment(*, organization, user):
        return agent_services.deployment_create(
            organization=organization,
            actor=user,
            agent=agent(organization=organization, user=user),
            name=None,
            channels=["api"],
        )[0]

    TENANT_FACTORIES.setdefault(agent_models.Agent, agent)
    TENANT_FACTORIES.setdefault(agent_models.AgentVersion, agent_version)
    TENANT_FACTORIES.setdefault(agent_models.AgentMemory, agent_memory)
    TENANT_FACTORIES.setdefault(agent_models.Credential, credential)
    TENANT_FACTORIES.setdefault(agent_models.Provider, provider)
    TENANT_FACTORIES.setdefault(agent_models.ModelConfig, model_config)
    TENANT_FACTORIES.setdefault(agent_models.Deployment, deployment)


_register_agents_factories()
# --- end agents app factories


# --- crews app factories -----------------------------------------------------------------------
def _register_crews_factories():
    from django.apps import apps

    if not apps.is_installed("apps.crews"):
        return
    from apps.crews import models as crew_models
    from apps.crews import services as crew_services
    from apps.runs import models as run_models
    from apps.runs import services as run_services

    agents_yaml = "researcher:\n  role: Researcher\n  goal: Find facts\n  backstory: Curious.\n"
    tasks_yaml = "research_task:\n  description: Research\n  expected_output: Facts\n  agent: researcher\n"

    def crew(*, organization, user):
        return crew_services.crew_create(
            organization=organization,
            actor=user,
            data={"name": f"Crew {uuid.uuid4().hex[:8]}", "agents_yaml": agents_yaml, "tasks_yaml": tasks_yaml},
        )

    def execution(*, organization, user):
        return run_services.execution_create(
            organization=organization,
            actor=user,
            kind=run_models.ExecutionKind.CREW,
            run_name="factory run",
            definition={"agents_yaml": agents_yaml, "tasks_yaml": tasks_yaml, "process": "sequential"},
            enqueue=False,
        )

    def orchestration(*, organization, user):
        return crew_services.orchestration_create(
            organization=organization,
            actor=user,
            data={"name": f"Orchestration {uuid.uuid4().hex[:8]}", "pattern": "sequential"},
        )

    TENANT_FACTORIES.setdefault(crew_models.Crew, crew)
    TENANT_FACTORIES.setdefault(run_models.Execution, execution)
    TENANT_FACTORIES.setdefault(crew_models.Orchestration, orchestration)


_register_crews_factories()
# --- end crews app factories


# --- scheduler app factories -------------------------------------------------------------------
def _register_scheduler_factories():
    from django.apps import apps

    if not apps.is_installed("apps.scheduler"):
        return
    from apps.crews.models import Crew
    from apps.scheduler.models import Schedule
    from apps.scheduler.services import schedule_create

    def schedule(*, organization, user):
        crew = make_tenant_object(Crew, organization, user)
        return schedule_create(
            organization=organization,
            actor=user,
            data={"name": "Nightly", "cron_expression": "0 9 * * *", "crew": crew.pk},
        )

    TENANT_FACTORIES.setdefault(Schedule, schedule)


_register_scheduler_factories()


# --- workflows app factories -------------------------------------------------------------------
def _register_workflow_factories():
    from django.apps import apps

    if not apps.is_installed("apps.workflows"):
        return
    from apps.agents.models import Agent
    from apps.workflows.models import Workflow, WorkflowRun, WorkflowVersion
    from apps.workflows.services import workflow_create, workflow_start

    def workflow(*, organization, user):
        agent = make_tenant_object(Agent, organization, user)
        definition = {
            "trigger": {"type": "manual", "conditions": {}},
            "steps": [{"id": "only", "agent_number": agent.agent_number, "action": "answer", "parameters": {}}],
            "error_handling": {"strategy": "fail_fast", "notification_on_error": False},
        }
        created, _secret = workflow_create(
            organization=organization,
            actor=user,
            data={"name": f"Flow {uuid.uuid4().hex[:8]}", "definition": definition},
        )
        return created

    def workflow_version(*, organization, user):
        return workflow(organization=organization, user=user).versions.get()

    def workflow_run(*, organization, user):
        return workflow_start(workflow=workflow(organization=organization, user=user), actor=user)

    TENANT_FACTORIES.setdefault(Workflow, workflow)
    TENANT_FACTORIES.setdefault(WorkflowVersion, workflow_version)
    TENANT_FACTORIES.setdefault(WorkflowRun, workflow_run)


_register_workflow_factories()


# --- knowledge app factories -------------------------------------------------------------------
def _register_knowledge_factories():
    from django.apps import apps

    if not apps.is_installed("apps.knowledge"):
        return
    from apps.knowledge import graph, services
    from apps.knowledge.models import Document, Entity, KnowledgeBase, Relationship

    def knowledge_base(*, organization, user):
        return services.knowledge_base_create(
            organization=organization, actor=user, data={"name": f"KB {uuid.uuid4().hex[:8]}"}
        )

    def document(*, organization, user):
        return services.document_create_text(
            knowledge_base=knowledge_base(organization=organization, user=user),
            actor=user,
            name="notes.txt",
            text="Otters hold stones.",
        )

    def entity(*, organization, user):
        return graph.row_create(
            graph.ENTITY, organization=organization, actor=user, data={"type": "concept", "label": "Otter"}
        )

    def relationship(*, organization, user):
        a, b = entity(organization=organization, user=user), entity(organization=organization, user=user)
        return graph.row_create(
            graph.RELATIONSHIP,
            organization=organization,
            actor=user,
            data={"source_id": a.pk, "target_id": b.pk, "type": "related_to"},
        )

    TENANT_FACTORIES.setdefault(KnowledgeBase, knowledge_base)
    TENANT_FACTORIES.setdefault(Document, document)
    TENANT_FACTORIES.setdefault(Entity, entity)
    TENANT_FACTORIES.setdefault(Relationship, relationship)


_register_knowledge_factories()
