"""``POST /api/v1/executions/{id}/replay``: a new run that reuses what an ended run's steps before
``from_step`` produced and runs ``from_step`` and what follows again (CrewAI ``replay -t``)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from apps.crews.serializers import ExecutionSerializer
from apps.runs import services as run_services
from apps.runs.models import Execution
from kai_platform.api.serializers import KaiSerializer, validated
from kai_platform.tenancy.viewsets import TenantScopedViewSet


class ExecutionReplaySerializer(KaiSerializer):
    from_step = serializers.CharField(
        max_length=300,
        help_text=(
            "The step (a crew task's key, an orchestration step's name) to run again; the steps the "
            "run started before it are answered from its step log."
        ),
    )


@extend_schema(tags=["executions"])
class ExecutionReplayViewSet(TenantScopedViewSet):
    model = Execution
    serializer_class = ExecutionSerializer
    http_method_names = ["post", "options"]

    @extend_schema(
        request=ExecutionReplaySerializer,
        responses={202: ExecutionSerializer},
        summary="Replay an ended run from one of its steps",
    )
    def replay(self, request, pk=None):
        """Start a new run of the same definition and inputs. Steps before ``from_step`` reuse the
        source run's outputs (no model or tool call); the new run's ``replayed_from`` names the
        source. A ``from_step`` the run has no step of answers 400 naming the valid steps."""
        source = self.get_object()
        data = validated(ExecutionReplaySerializer, request)
        replay = run_services.execution_replay(execution=source, actor=request.user, from_step=data["from_step"])
        return Response(ExecutionSerializer(replay).data, status=status.HTTP_202_ACCEPTED)
