"""Membership roles and their permission matrix (docs/accounts.md)."""

from django.db import models


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    DEVELOPER = "developer", "Developer"
    USER = "user", "User"
    AGENT = "agent", "Agent (machine identity)"


ROLE_RANK = {Role.AGENT: 1, Role.USER: 2, Role.DEVELOPER: 3, Role.ADMIN: 4, Role.OWNER: 5}

ALL_ROLES = frozenset(Role)
#: everyone but the machine identity: may create and restart agents
HUMAN_ROLES = frozenset(ALL_ROLES - {Role.AGENT})
#: may build: agents' configuration, credentials, tools, voice training
BUILDER_ROLES = frozenset({Role.OWNER, Role.ADMIN, Role.DEVELOPER})
#: may edit system configuration, manage members and see every member's keys
ADMIN_ROLES = frozenset({Role.OWNER, Role.ADMIN})


def role_at_most(role: str, ceiling: str) -> bool:
    return ROLE_RANK[Role(role)] <= ROLE_RANK[Role(ceiling)]
