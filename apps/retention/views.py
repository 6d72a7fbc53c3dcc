"""``GET/PUT /api/v1/retention``: how long the organization's data is kept (owners only)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from apps.retention import selectors, services
from apps.retention.serializers import RetentionPolicySerializer
from kai_platform.api.serializers import validated
from kai_platform.api.views import KaiAPIView
from kai_platform.tenancy.roles import Role

OWNER_ONLY = frozenset({Role.OWNER})


@extend_schema(tags=["retention"])
class RetentionPolicyView(KaiAPIView):
    """Days kept per kind of data (null: the plan's default), ``keep: all|failed_only`` for runs,
    and what the last prune removed. PUT changes the given fields only."""

    action_roles = {"get": OWNER_ONLY, "put": OWNER_ONLY, "patch": OWNER_ONLY}

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        return Response(selectors.policy_view(organization=self.organization))

    @extend_schema(request=RetentionPolicySerializer, responses={200: OpenApiTypes.OBJECT})
    def put(self, request):
        data = validated(RetentionPolicySerializer, request)
        services.retention_policy_update(organization=self.organization, actor=request.user, data=data)
        return Response(selectors.policy_view(organization=self.organization))

    patch = put
