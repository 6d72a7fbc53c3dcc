"""The plan quotas: what is counted, over which sliding window, and each plan's default limits.

The limits in force live in the database (``QuotaPlan`` rows, seeded from ``DEFAULT_PLAN_LIMITS``
and editable by staff; ``QuotaOverride`` per organization). The figures below are the
API documents' "Rate Limit Tiers" for free/pro/enterprise (docs/quotas.md); ``standard`` (the
default plan, docs/decisions.md) sits between free and pro.
"""

from __future__ import annotations

from dataclasses import dataclass

HOUR = 3600
DAY = 86400


@dataclass(frozen=True)
class QuotaSpec:
    name: str  # the quota's name in the API (`usage.quotas`, the 429 envelope)
    field: str  # the limit's column on QuotaPlan / QuotaOverride
    window_seconds: int
    unit: str  # what one unit is, for messages ("agent executions")
    #: where the database keeps what was counted: "executions" (the Execution table) or
    #: "ledger" (QuotaUsage rows written by quota_consume)
    source: str

    @property
    def window_name(self) -> str:
        return {HOUR: "hour", DAY: "day"}.get(self.window_seconds, f"{self.window_seconds} s")


AGENT_EXECUTIONS = "agent_executions"
WORKFLOW_EXECUTIONS = "workflow_executions"
VOICE_COMMANDS = "voice_commands"

QUOTAS: dict[str, QuotaSpec] = {
    AGENT_EXECUTIONS: QuotaSpec(AGENT_EXECUTIONS, "agent_executions_per_hour", HOUR, "agent executions", "executions"),
    WORKFLOW_EXECUTIONS: QuotaSpec(
        WORKFLOW_EXECUTIONS, "workflow_executions_per_day", DAY, "workflow executions", "executions"
    ),
    VOICE_COMMANDS: QuotaSpec(VOICE_COMMANDS, "voice_commands_per_hour", HOUR, "voice commands", "ledger"),
}

#: plan → quota → limit per window
DEFAULT_PLAN_LIMITS: dict[str, dict[str, int]] = {
    "free": {AGENT_EXECUTIONS: 200, WORKFLOW_EXECUTIONS: 50, VOICE_COMMANDS: 100},
    "standard": {AGENT_EXECUTIONS: 500, WORKFLOW_EXECUTIONS: 200, VOICE_COMMANDS: 250},
    "pro": {AGENT_EXECUTIONS: 1000, WORKFLOW_EXECUTIONS: 500, VOICE_COMMANDS: 500},
    "enterprise": {AGENT_EXECUTIONS: 5000, WORKFLOW_EXECUTIONS: 2000, VOICE_COMMANDS: 2000},
}
FALLBACK_PLAN = "standard"

#: a quota_warning event is published once per window when usage reaches this share of the limit
WARNING_RATIO = 0.8


def spec(quota: str) -> QuotaSpec:
    try:
        return QUOTAS[quota]
    except KeyError:
        raise ValueError(f"unknown quota {quota!r}; known: {', '.join(QUOTAS)}") from None
