"""Thin views over apps.approvals.services / selectors."""

from __future__ import annotations

import django_filters
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.approvals import selectors, services
from apps.approvals.models import Approval, ApprovalSource, ApprovalStatus
from apps.approvals.serializers import ApprovalSerializer, ApproveSerializer, RejectSerializer
from kai_platform.api.serializers import validated
from kai_platform.tenancy.roles import HUMAN_ROLES
from kai_platform.tenancy.viewsets import TenantScopedViewSet, not_offered


class ApprovalFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=ApprovalStatus.choices)
    pending = django_filters.BooleanFilter(method="filter_pending", help_text="true: only unanswered ones.")
    source = django_filters.ChoiceFilter(choices=ApprovalSource.choices)
    execution = django_filters.UUIDFilter(field_name="execution_id")
    workflow_run = django_filters.UUIDFilter(field_name="workflow_run_id")

    class Meta:
        model = Approval
        fields = ["status", "source"]

    def filter_pending(self, queryset, name, value):
        return (
            queryset.filter(status=ApprovalStatus.PENDING) if value else queryset.exclude(status=ApprovalStatus.PENDING)
        )


@extend_schema(tags=["approvals"])
class ApprovalViewSet(TenantScopedViewSet):
    """Human-in-the-loop approvals. ``?pending=true`` lists the unanswered ones; approve (with an
    optional edited ``value``) resumes the parked run, reject (optional ``feedback``) fails it."""

    model = Approval
    serializer_class = ApprovalSerializer
    filterset_class = ApprovalFilter
    http_method_names = ["get", "post", "head", "options"]
    action_roles = {"approve": HUMAN_ROLES, "reject": HUMAN_ROLES}

    def scope_queryset(self, queryset):
        return selectors.approvals_for_list(queryset=queryset)

    @not_offered
    def create(self, request, *args, **kwargs):
        raise exceptions.MethodNotAllowed("POST", detail="Approvals are asked by runs, not created over the API.")

    def _answer(self, request, *, approve: bool):
        approval = self.get_object()
        serializer_class = ApproveSerializer if approve else RejectSerializer
        data = validated(serializer_class, request, data=request.data or {})
        value = data.get("value", data.get("edited_value", services._UNSET)) if approve else services._UNSET
        approval = services.approval_resolve(
            approval=approval,
            actor=request.user,
            role=self.role,
            approve=approve,
            value=value,
            feedback=data.get("feedback") or data.get("reason") or "",
        )
        return Response(ApprovalSerializer(self.get_queryset().get(pk=approval.pk)).data)

    @extend_schema(request=ApproveSerializer, responses={200: ApprovalSerializer})
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        """Approve; ``value`` replaces the proposed output (the run continues with it)."""
        return self._answer(request, approve=True)

    @extend_schema(request=RejectSerializer, responses={200: ApprovalSerializer})
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        """Reject; the run fails (a workflow step goes to its fallback)."""
        return self._answer(request, approve=False)
