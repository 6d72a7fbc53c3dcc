"""Channel-layer group names, in one place."""


def org_group(organization_id: object) -> str:
    return f"org.{organization_id}"


def agent_group(agent_id: object) -> str:
    return f"agent.{agent_id}"


def execution_group(execution_id: object) -> str:
    return f"execution.{execution_id}"
