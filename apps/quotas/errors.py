"""The refusal of a plan quota: 429 ``GENERAL_002`` naming the quota, its window and its reset."""

from __future__ import annotations

from datetime import datetime
from typing import TypedDict

from kai_platform.api.errors import RateLimited


class QuotaDetail(TypedDict):
    """The ``quota`` object of a 429 body (and of ``QuotaExceeded.quota``)."""

    name: str
    limit: int
    used: int
    window: str
    window_seconds: int
    reset_at: str | None
    retry_after: int
    plan: str
    custom: bool


class QuotaExceeded(RateLimited):
    default_detail = "Plan quota exceeded."
    error_type = "quota_exceeded"

    def __init__(
        self,
        *,
        quota: str,
        unit: str,
        limit: int,
        used: int,
        window: str,
        window_seconds: int,
        reset_at: datetime | None,
        retry_after: int,
        plan: str,
        custom: bool,
    ):
        where = "this organization's custom limit" if custom else f"the {plan} plan"
        when = f"; the next one is accepted at {reset_at.isoformat()} (in {retry_after} s)" if reset_at else ""
        detail = (
            f"Quota {quota} exceeded: {where} allows {limit} {unit} per {window} "
            f"and {used} were accepted in the last {window}{when}."
        )
        self.quota: QuotaDetail = {
            "name": quota,
            "limit": limit,
            "used": used,
            "window": window,
            "window_seconds": window_seconds,
            "reset_at": reset_at.isoformat() if reset_at else None,
            "retry_after": retry_after,
            "plan": plan,
            "custom": custom,
        }
        super().__init__(
            detail, retry_after=retry_after, errors=[{"field": quota, "message": detail}], extra={"quota": self.quota}
        )
