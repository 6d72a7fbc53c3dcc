"""What the agents app's views share: the builder roles, the id pattern, the write actions."""

from __future__ import annotations

from kai_platform.tenancy.roles import Role

#: may define agents' building blocks (providers, secrets, tools, models, deployments)
BUILDER_ROLES = frozenset({Role.OWNER, Role.ADMIN, Role.DEVELOPER})
UUID_LOOKUP = "[0-9a-fA-F-]{32,36}"
WRITE_ACTIONS = ("create", "update", "partial_update", "destroy")
