"""Cached limits follow every change of a plan, an override or an organization's plan: cleared at
once and again after commit (so a concurrent reader cannot re-cache the old value meanwhile)."""

from __future__ import annotations

from django.db import transaction

from apps.quotas.services import quota_limits_forget


def _forget(organization_ids=None) -> None:
    quota_limits_forget(organization_ids=organization_ids)
    transaction.on_commit(lambda: quota_limits_forget(organization_ids=organization_ids))


def forget_all(sender, instance, **kwargs) -> None:
    _forget(None)


def forget_organization(sender, instance, **kwargs) -> None:
    _forget([getattr(instance, "organization_id", None) or instance.pk])
