"""Lists read as plain rows (TenantScopedViewSet.list_as_rows, api/serializers.RowPlan) answer the
same JSON, byte for byte, as the serializer they stand in for."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest
from django.utils import timezone

from apps.accounts.models import ApiKey
from apps.accounts.serializers import ApiKeySerializer
from apps.accounts.services import api_key_create
from apps.accounts.views import ApiKeyViewSet
from kai_platform.api.renderers import dumps
from kai_platform.api.serializers import row_plan

pytestmark = pytest.mark.django_db


def _keys(member, n=5):
    now = timezone.now()
    for i in range(n):
        key, _ = api_key_create(
            organization=member.organization,
            created_by=member.user,
            creator_role="owner",
            name=f"key {i}",
            role="developer" if i % 2 else None,
        )
        changes = {}
        if i == 1:
            changes["revoked_at"] = now
        if i == 2:
            changes["expires_at"] = now - timedelta(days=1)  # expired: inactive
        if i == 3:
            changes["expires_at"] = now + timedelta(days=1)
            changes["last_used_at"] = now.replace(microsecond=0)  # no fraction: isoformat drops it too
        if changes:
            ApiKey.objects.filter(pk=key.pk).update(**changes)


def _serialized(member) -> list:
    keys = ApiKey.objects.for_org(member.organization).order_by("-created_at")
    return orjson.loads(dumps(ApiKeySerializer(keys, many=True).data))


def test_the_api_keys_list_is_read_as_rows_and_answers_what_the_serializer_would(member, client_for):
    assert row_plan(ApiKeySerializer, ApiKey, ApiKeyViewSet.list_row_properties) is not None
    _keys(member)
    response = client_for(member).get("/api/v1/auth/tokens?limit=100")
    assert response.status_code == 200
    body = response.json()
    assert body["items"] == _serialized(member) and body["total"] == 5
    assert [list(item) for item in body["items"]] == [list(ApiKeySerializer.Meta.fields)] * 5  # key order too
    assert {item["is_active"] for item in body["items"]} == {True, False}


def test_outside_utc_the_rows_represent_datetimes_as_drf_does(member, client_for):
    _keys(member, 3)
    with timezone.override("Asia/Kolkata"):
        body = client_for(member).get("/api/v1/auth/tokens?limit=100").json()
        assert body["items"] == _serialized(member)
    assert "+05:30" in body["items"][0]["created_at"]


def test_a_serializer_with_a_field_that_is_no_column_has_no_row_plan():
    from kai_platform.api.serializers import KaiModelSerializer

    class Shown(KaiModelSerializer):
        class Meta:
            model = ApiKey
            fields = ["id", "is_active"]

    assert row_plan(Shown, ApiKey) is None  # is_active is a property nobody declared
    assert row_plan(Shown, ApiKey, {"is_active": ("revoked_at", "expires_at")}) is not None
    with pytest.raises(ValueError):
        row_plan(Shown, ApiKey, {"is_active": ("revoked_at", "no_such_column")})
