"""Seed 002 voice routes: process, commands (history), settings, capabilities, synthesize, and
``agents/{id}/voice``."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers as drf_serializers
from rest_framework.response import Response

from apps.agents.models import Agent
from apps.audit.services import audit_record
from apps.voice import providers, selectors, services
from apps.voice.models import VoiceCommand
from apps.voice.serializers import (
    AgentVoiceSerializer,
    SynthesizeSerializer,
    TrainDeleteSerializer,
    TrainResponseSerializer,
    TrainSerializer,
    VoiceCommandSerializer,
    VoiceProcessSerializer,
    VoiceSettingsSerializer,
)
from kai_platform.api.serializers import validated
from kai_platform.api.views import KaiAPIView
from kai_platform.tenancy.roles import ADMIN_ROLES, BUILDER_ROLES
from kai_platform.tenancy.viewsets import READ_ONLY, TenantScopedViewSet, get_or_404

VoiceProcessResponse = inline_serializer(
    "VoiceProcessResponse",
    {
        "success": drf_serializers.BooleanField(),
        "data": drf_serializers.DictField(),
    },
)


def _process_body(command) -> dict:
    return {
        "command_id": command.pk,
        "transcribed_text": command.transcribed_text,
        "confidence_score": command.confidence_score,
        "detected_language": command.detected_language,
        "input_type": command.input_type,
        "command_understood": command.understood,
        "intent": command.intent,
        "agent_routing": command.routing,
        "response": {
            "text": command.response_text,
            "suggestions": command.suggestions,
            "requires_followup": command.requires_followup,
        },
        "execution_id": command.execution_id,
        **({"note": command.note} if command.note else {}),
    }


@extend_schema(tags=["voice"])
class VoiceProcessView(KaiAPIView):
    """Transcribe (audio → the organization's speech-to-text provider; or ``text_fallback``),
    parse the intent and route to an agent. ``execute: true`` also starts the routed agent's run.
    Audio with no provider configured and no text fallback → 503 ``VOICE_003``."""

    @extend_schema(request=VoiceProcessSerializer, responses={200: VoiceProcessResponse})
    def post(self, request):
        data = validated(VoiceProcessSerializer, request)
        context = data.get("context") or {}
        language = (
            data.get("language")
            or services.voice_settings_get(organization=self.organization, user=request.user)["language"]
        )
        command = services.voice_process(
            organization=self.organization,
            actor=request.user,
            text_fallback=data.get("text_fallback", ""),
            audio=data.get("audio_data") or None,
            audio_filename=f"audio.{data['audio_format']}",
            language=language,
            context=context,
            execute=data["execute"],
        )
        return Response({"success": True, "data": _process_body(command)})


@extend_schema(tags=["voice"])
class AgentVoiceView(KaiAPIView):
    """Seed 002 ``POST agents/{id}/voice``: a voice command for this agent; by default it runs
    (``execute: false`` only parses). Answers ``{transcribed_text, command_understood,
    agent_response, voice_response}``."""

    @extend_schema(request=AgentVoiceSerializer, responses={200: VoiceProcessResponse})
    def post(self, request, pk):
        agent = get_or_404(Agent.objects.for_org(self.organization), pk=pk)
        data = validated(AgentVoiceSerializer, request)
        language = (
            data.get("language")
            or services.voice_settings_get(organization=self.organization, user=request.user)["language"]
        )
        command = services.voice_process(
            organization=self.organization,
            actor=request.user,
            text_fallback=data.get("text_input", ""),
            audio=data.get("audio_data") or None,
            audio_filename=f"audio.{data['audio_format']}",
            language=language,
            context=data.get("context") or {},
            execute=data["execute"],
            agent=agent,
        )
        body = _process_body(command)
        body.update(
            {
                "agent_response": {
                    "execution_id": command.execution_id,
                    "status": "queued" if command.execution_id else "not_started",
                },
                "voice_response": command.response_text,
            }
        )
        return Response({"success": True, "data": body})


@extend_schema(tags=["voice"])
class VoiceCommandViewSet(TenantScopedViewSet):
    """Command history, newest first: members see their own commands, owners/admins everyone's."""

    model = VoiceCommand
    serializer_class = VoiceCommandSerializer
    http_method_names = READ_ONLY
    filterset_fields = ["input_type", "understood", "target_agent"]

    def scope_queryset(self, queryset):
        return selectors.voice_commands_visible(
            queryset=queryset, user=self.request.user, sees_all=self.role in ADMIN_ROLES
        )


@extend_schema(tags=["voice"])
class VoiceSettingsView(KaiAPIView):
    """The requesting member's voice settings (``VoiceSettings``, docs/voice.md); POST/PUT/PATCH merge."""

    @extend_schema(responses={200: VoiceSettingsSerializer})
    def get(self, request):
        return Response(services.voice_settings_get(organization=self.organization, user=request.user))

    @extend_schema(request=VoiceSettingsSerializer, responses={200: VoiceSettingsSerializer})
    def post(self, request):
        data = validated(VoiceSettingsSerializer, request)
        return Response(
            services.voice_settings_update(organization=self.organization, user=request.user, changes=dict(data))
        )

    put = patch = post


@extend_schema(tags=["voice"])
class VoiceCapabilitiesView(KaiAPIView):
    """Which parts of voice work here: text fallback and intent parsing always; transcription
    and synthesis when a provider (or espeak-ng) is configured."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        return Response(providers.capabilities(self.organization))


@extend_schema(tags=["voice"])
class VoiceSynthesizeView(KaiAPIView):
    """Text-to-speech: the configured provider, else espeak-ng; the audio itself is the answer
    (``audio/wav`` by default). Neither available → 503 ``VOICE_003``."""

    @extend_schema(
        request=SynthesizeSerializer, responses={(200, "audio/wav"): OpenApiResponse(response=OpenApiTypes.BINARY)}
    )
    def post(self, request):
        data = validated(SynthesizeSerializer, request)
        preferences = services.voice_settings_get(organization=self.organization, user=request.user)
        audio, content_type, engine = providers.synthesize(
            self.organization,
            text=data["text"],
            voice=data.get("voice") or preferences.get("voice_id") or "",
            language=data.get("language") or "",
            speed=data.get("speed") or preferences.get("speech_rate"),
            response_format=data["format"],
        )
        audit_record(
            organization=self.organization,
            actor=request.user,
            action="voice.synthesize",
            model="voice.Synthesis",
            object_id="-",
            after={"engine": engine, "characters": len(data["text"]), "bytes": len(audio)},
        )
        response = HttpResponse(audio, content_type=content_type)
        response["X-Voice-Engine"] = engine
        response["Content-Disposition"] = f'inline; filename="speech.{data["format"]}"'
        return response


@extend_schema(tags=["voice"])
class VoiceTrainView(KaiAPIView):
    """Seed 002 ``voice/train``: POST ``{intent, phrases[]}`` teaches the organization's intent
    router (``voice/process`` uses the phrases at once: a command starting with one parses as
    that intent, ahead of the built-in verbs); GET lists what was taught; DELETE ``?intent=``
    forgets one intent's phrases. Teaching and forgetting need owner, admin or developer."""

    action_roles = {"post": BUILDER_ROLES, "delete": BUILDER_ROLES}

    def _body(self, **extra) -> dict:
        trained = selectors.trained_phrases(organization=self.organization)
        return {
            "intents": [{"intent": k, "phrases": v} for k, v in trained.items()],
            "total_phrases": sum(len(v) for v in trained.values()),
            **extra,
        }

    @extend_schema(responses={200: TrainResponseSerializer})
    def get(self, request):
        return Response(self._body())

    @extend_schema(request=TrainSerializer, responses={201: TrainResponseSerializer})
    def post(self, request):
        data = validated(TrainSerializer, request)
        added = services.voice_train(
            organization=self.organization, actor=request.user, intent=data["intent"], phrases=data["phrases"]
        )
        return Response(self._body(added=added), status=201)

    @extend_schema(parameters=[TrainDeleteSerializer], responses={204: None})
    def delete(self, request):
        data = validated(TrainDeleteSerializer, request, data=request.query_params)
        services.voice_untrain(organization=self.organization, actor=request.user, intent=data["intent"])
        return Response(status=204)
