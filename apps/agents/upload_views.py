"""Seed 000 ``POST agents/{id}/upload``: an agent's files, stored by apps.files (a feature uses the
shared file service; files imports no feature, docs/architecture.md)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.parsers import MultiPartParser

from apps.agents.models import Agent
from apps.files.serializers import AgentUploadSerializer, UploadResponseSerializer
from apps.files.uploads import CappedUploadHandler
from apps.files.views import store_uploads
from kai_platform.api.views import KaiAPIView
from kai_platform.tenancy.viewsets import get_or_404


@extend_schema(tags=["files"])
class AgentUploadView(KaiAPIView):
    """Seed 000 ``POST agents/{id}/upload``: files for one agent (multipart ``file``, repeatable),
    stored like ``files/upload`` and linked to the agent (``files?agent_id=`` lists them)."""

    parser_classes = [MultiPartParser]

    def initialize_request(self, request, *args, **kwargs):
        request.upload_handlers = [CappedUploadHandler(request)]  # size caps while the body streams
        return super().initialize_request(request, *args, **kwargs)

    @extend_schema(request={"multipart/form-data": AgentUploadSerializer}, responses={201: UploadResponseSerializer})
    def post(self, request, pk):
        agent = get_or_404(Agent.objects.for_org(self.organization), pk=pk)
        return store_uploads(request, AgentUploadSerializer, organization=self.organization, agent_id=agent.pk)
