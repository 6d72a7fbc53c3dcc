"""Voice commands: transcript (audio through the organization's speech provider, or the text
fallback) → intent → agent routing → optionally an agent run; every command is recorded,
audited, counted against the plan's ``voice_commands`` quota and announced on the hub
(``voice:command_received``, ``voice:processing``, ``voice:response_ready``)."""

from __future__ import annotations

import importlib.util
import time
import uuid

from django.db import transaction
from rest_framework import exceptions

from apps.agents.calls import agent_call_start
from apps.agents.models import Agent
from apps.audit.services import audit_covered, audit_record, snapshot
from apps.events.services import publish
from apps.quotas.services import quota_consume
from apps.runs.models import ExecutionKind
from apps.voice import intents, providers, selectors
from apps.voice.models import InputType, TrainingPhrase, VoiceCommand, VoiceSettings
from kai_platform.logging import request_id_var
from kai_platform.tenancy import locks

DEFAULT_SETTINGS = {
    "language": "en-US",
    "voice_id": "",
    "speech_rate": 1.0,
    "pitch": 1.0,
    "volume": 1.0,
    "wake_word_enabled": False,
    "wake_words": ["hey kai"],
    "noise_suppression": True,
    "auto_transcription": True,
}


def voice_quota_consume(*, organization, command_id, source: str) -> None:
    """Count one voice command against the plan's ``voice_commands`` per-hour quota (429
    ``GENERAL_002`` when it is used up). Delegates to ``apps.quotas`` when that app provides its
    service; until then nothing is counted."""
    if importlib.util.find_spec("apps.quotas.services") is None:
        return

    quota_consume(organization=organization, quota="voice_commands", source=source, ref=str(command_id))


def _processing(organization, actor, status: str, command_id, **extra) -> None:
    publish(
        organization,
        "voice.processing",
        {"status": status, "command_id": str(command_id), **extra},
        actor=actor,
        owner=actor,
        component="voice",
    )


def _agent_refs(organization) -> tuple[list[intents.AgentRef], dict[str, Agent]]:
    agents = list(
        Agent.objects.for_org(organization)
        .filter(is_active=True)
        .only("id", "agent_number", "name", "role", "status", "is_active", "organization_id")
    )
    return (
        [intents.AgentRef(str(a.pk), a.agent_number, a.name, a.role or "") for a in agents],
        {str(a.pk): a for a in agents},
    )


def _start_execution(*, organization, actor, agent: Agent, parsed: intents.ParsedCommand, text: str, context: dict):
    with audit_covered():  # the command's own row (voice_command.create) names the run it started
        return agent_call_start(
            actor=actor,
            kind=ExecutionKind.AGENT_EXECUTE,
            agent=agent,
            run_name=f"{agent.name} - voice: {parsed.action}",
            definition={
                "action": parsed.action,
                "parameters": {**parsed.entities, "utterance": text},
                "context": context,
                "user_id": str(actor.pk),
                "request_id": request_id_var.get().strip("-"),
                "voice_input": True,
            },
        )


def voice_process(
    *,
    organization,
    actor,
    text_fallback: str = "",
    audio: bytes | None = None,
    audio_filename: str = "audio.wav",
    language: str = "",
    context: dict | None = None,
    execute: bool = False,
    agent: Agent | None = None,
    source: str = "rest",
) -> VoiceCommand:
    """Process one command. Audio goes to the configured speech-to-text provider; when none is
    configured (or it fails) the text fallback is used if given, else 503 ``VOICE_003``.
    ``agent`` fixes the target (``agents/{id}/voice``); ``execute`` starts an agent run for a
    routed, understood command."""
    started = time.perf_counter()
    context = dict(context or {})
    text_fallback = (text_fallback or "").strip()
    if not audio and not text_fallback:
        raise exceptions.ValidationError({"text_fallback": ["Send audio_data or text_fallback."]})
    command_id = uuid.uuid4()
    voice_quota_consume(organization=organization, command_id=command_id, source=source)

    note = ""
    if audio:
        _processing(organization, actor, "transcribing", command_id, progress=0.1)
        try:
            transcript = providers.transcribe(organization, audio=audio, filename=audio_filename, language=language)
            text, confidence, detected, stt = (
                transcript.text,
                transcript.confidence,
                transcript.language,
                transcript.provider,
            )
            input_type = InputType.AUDIO
        except (providers.VoiceUnavailable, providers.TranscriptionFailed) as exc:
            if not text_fallback:
                raise
            note = f"audio not transcribed ({exc.detail}); used text_fallback"
            text, confidence, detected, stt, input_type = text_fallback, 1.0, language, "", InputType.TEXT
    else:
        text, confidence, detected, stt, input_type = text_fallback, 1.0, language, "", InputType.TEXT
    publish(
        organization,
        "voice.command_received",
        {"command_id": str(command_id), "text": text, "confidence": confidence, "language": detected or language},
        actor=actor,
        owner=actor,
        component="voice",
    )

    _processing(organization, actor, "analyzing", command_id, progress=0.5)
    refs, by_id = _agent_refs(organization)
    if agent is not None:
        refs = [r for r in refs if r.id == str(agent.pk)] or [
            intents.AgentRef(str(agent.pk), agent.agent_number, agent.name, agent.role or "")
        ]
        by_id.setdefault(str(agent.pk), agent)
        context["active_agent"] = agent.agent_number
    parsed = intents.parse(
        text,
        refs,
        active_agent=context.get("active_agent"),
        trained=selectors.trained_phrases(organization=organization),
    )
    _processing(
        organization,
        actor,
        "routing",
        command_id,
        progress=0.7,
        target_agent=parsed.target.agent_number if parsed.target else None,
    )

    execution = None
    target = by_id.get(parsed.target.id) if parsed.target else None
    if execute and parsed.understood and target is not None and not parsed.global_command:
        execution = _start_execution(
            organization=organization, actor=actor, agent=target, parsed=parsed, text=text, context=context
        )
        _processing(organization, actor, "executing", command_id, progress=0.9, execution_id=str(execution.pk))
    reply, suggestions, followup = intents.response_text(parsed, text)
    routing = parsed.routing()
    with transaction.atomic():
        command = VoiceCommand.objects.create(
            id=command_id,
            organization=organization,
            created_by=actor,
            input_type=input_type,
            language=language or "",
            detected_language=detected or "",
            transcribed_text=text,
            confidence_score=confidence,
            audio_bytes=len(audio or b""),
            stt_provider=stt,
            intent=parsed.intent(),
            routing=routing,
            understood=parsed.understood,
            target_agent=target,
            response_text=reply,
            execution_id=execution.pk if execution is not None else None,
            context={k: v for k, v in context.items() if k in ("active_agent", "conversation_history")},
            processing_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        audit_record(
            organization=organization,
            actor=actor,
            action="voice_command.create",
            instance=command,
            after=snapshot(
                command, ["id", "input_type", "transcribed_text", "understood", "target_agent", "execution_id"]
            ),
        )
        publish(
            organization,
            "voice.response_ready",
            {
                "command_id": str(command.pk),
                "text": reply,
                "understood": parsed.understood,
                "intent": parsed.intent(),
                "agent_routing": routing,
                "execution_id": str(execution.pk) if execution is not None else None,
            },
            agent=target,
            actor=actor,
            owner=actor,
            component="voice",
        )
    command.suggestions, command.requires_followup, command.note = suggestions, followup, note
    return command


# --- training ---------------------------------------------------------------------------------

#: most phrases one organization may teach (every command is matched against all of them)
MAX_TRAINING_PHRASES = 2000


def voice_train(*, organization, actor, intent: str, phrases: list[str]) -> int:
    """Add normalized ``phrases`` for ``intent`` to the organization's intent router; the next
    command uses them. Returns how many were new (a phrase taught twice is kept once)."""
    with transaction.atomic():
        locks.organization_xact_lock(locks.VOICE_TRAINING, organization.pk)
        existing = set(
            TrainingPhrase.objects.for_org(organization)
            .filter(intent=intent, phrase__in=phrases)
            .values_list("phrase", flat=True)
        )
        new = [p for p in phrases if p not in existing]
        total = TrainingPhrase.objects.for_org(organization).count()
        if total + len(new) > MAX_TRAINING_PHRASES:
            raise exceptions.ValidationError(
                {"phrases": [f"An organization may keep {MAX_TRAINING_PHRASES} training phrases; it has {total}."]}
            )
        TrainingPhrase.objects.bulk_create(
            [TrainingPhrase(organization=organization, created_by=actor, intent=intent, phrase=p) for p in new]
        )
        audit_record(
            organization=organization,
            actor=actor,
            action="voice.train",
            model="voice.TrainingPhrase",
            object_id=intent,
            after={"intent": intent, "added": new},
        )
    return len(new)


def voice_untrain(*, organization, actor, intent: str) -> int:
    """Forget every phrase taught for ``intent``; returns how many were removed."""
    with transaction.atomic():
        deleted, _ = TrainingPhrase.objects.for_org(organization).filter(intent=intent).delete()
        if deleted:
            audit_record(
                organization=organization,
                actor=actor,
                action="voice.untrain",
                model="voice.TrainingPhrase",
                object_id=intent,
                before={"intent": intent, "phrases": deleted},
            )
    return deleted


# --- settings ---------------------------------------------------------------------------------


def voice_settings_get(*, organization, user) -> dict:
    row = VoiceSettings.objects.for_org(organization).filter(user=user).first()
    language = (user.preferences or {}).get("default_voice_language") or DEFAULT_SETTINGS["language"]
    return {**DEFAULT_SETTINGS, "language": language, **(row.settings if row else {})}


def voice_settings_update(*, organization, user, changes: dict) -> dict:
    with transaction.atomic():
        row, created = (
            VoiceSettings.objects.for_org(organization)
            .select_for_update()
            .get_or_create(organization=organization, user=user, defaults={"created_by": user, "settings": {}})
        )
        before = dict(row.settings)
        row.settings = {**before, **changes}
        row.save(update_fields=["settings", "updated_at"])
        audit_record(
            organization=organization,
            actor=user,
            action="voice_settings.update",
            instance=row,
            before=None if created else {"settings": before},
            after={"settings": row.settings},
        )
    return voice_settings_get(organization=organization, user=user)
