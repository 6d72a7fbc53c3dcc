"""The base of every tenant-owned model.

Query tenant data only through ``Model.objects.for_org(org)``; the manager's plain ``all()``
exists for Django internals (admin, migrations) and for platform-wide jobs that say so.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, ClassVar

from django.conf import settings
from django.db import models


class TenantQuerySet(models.QuerySet[Any]):
    def for_org(self, organization: Any) -> TenantQuerySet:
        if organization is None:
            return self.none()
        org_id = organization if isinstance(organization, (uuid.UUID, str)) else organization.pk
        return self.filter(organization_id=org_id)


_TenantManagerBase = models.Manager.from_queryset(TenantQuerySet)


class TenantManager(_TenantManagerBase[Any]):
    pass


class TenantModel(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="+", editable=False
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )

    objects = TenantManager()

    class Meta:
        abstract = True
        ordering: ClassVar[Sequence[str]] = ("-created_at",)  # subclasses order by their own fields
