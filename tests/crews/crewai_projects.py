"""Crews of this suite kept in CrewAI's project layout (tests/crews/projects/<name>/config/
agents.yaml, tasks.yaml, crew.yaml) and turned into crews of the platform."""

from __future__ import annotations

from pathlib import Path

import yaml

PROJECTS = Path(__file__).resolve().parent / "projects"

MARKET_SIZE_SCHEMA = {
    "type": "object",
    "properties": {
        "market": {"type": "string"},
        "size_usd_billion": {"type": "number", "minimum": 0},
        "year": {"type": "integer", "minimum": 2000},
    },
    "required": ["market", "size_usd_billion", "year"],
}


def project_crew(member, name: str, **overrides):
    """The project as a crew of the member's organization (crew.yaml: process + crew settings)."""
    from apps.crews.services import crew_create

    config_dir = PROJECTS / name / "config"
    crew_yaml = yaml.safe_load((config_dir / "crew.yaml").read_text()) or {}
    process = crew_yaml.pop("process", "sequential")
    data = {
        "name": name,
        "agents_yaml": (config_dir / "agents.yaml").read_text(),
        "tasks_yaml": (config_dir / "tasks.yaml").read_text(),
        "process": process,
        "config": crew_yaml,
        **overrides,
    }
    return crew_create(organization=member.organization, actor=member.user, data=data)


def market_schema(member):
    from apps.schemas.services import json_schema_create

    return json_schema_create(
        organization=member.organization, actor=member.user, data={"name": "market_size", "schema": MARKET_SIZE_SCHEMA}
    )


def callback_webhook(member, name="crew-results"):
    from apps.webhooks.services import webhook_create

    webhook, _ = webhook_create(
        organization=member.organization,
        actor=member.user,
        data={"name": name, "url": "https://93.184.216.34/hook", "events": ["execution.completed"]},
    )
    return webhook


#: the schemas whose first-try valid rate is measured: shapes CrewAI projects' pydantic models take
RATE_SCHEMAS = {
    "flat": MARKET_SIZE_SCHEMA,
    "list": {
        "type": "object",
        "properties": {"competitors": {"type": "array", "minItems": 2, "items": {"type": "string"}}},
        "required": ["competitors"],
    },
    "nested": {
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "score": {"type": "number", "maximum": 10}},
                    "required": ["name", "score"],
                },
            }
        },
        "required": ["items"],
    },
    "enum_bounds": {
        "type": "object",
        "properties": {
            "sentiment": {"enum": ["positive", "negative"]},
            "confidence": {"type": "integer", "minimum": 1, "maximum": 5},
        },
        "required": ["sentiment", "confidence"],
        "additionalProperties": False,
    },
    "pydantic_refs": {
        "$defs": {
            "Source": {
                "type": "object",
                "properties": {"url": {"type": "string", "format": "uri"}},
                "required": ["url"],
            }
        },
        "type": "object",
        "properties": {
            "title": {"type": "string", "minLength": 3},
            "sources": {"type": "array", "items": {"$ref": "#/$defs/Source"}},
        },
        "required": ["title", "sources"],
    },
    "pattern": {
        "type": "object",
        "properties": {"ticket": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"}},
        "required": ["ticket"],
    },
}
