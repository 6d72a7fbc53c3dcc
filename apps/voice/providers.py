"""Speech providers of an organization: speech-to-text through an OpenAI-compatible
transcription endpoint (``POST {base_url}/audio/transcriptions``) and text-to-speech through an
OpenAI-compatible speech endpoint (``POST {base_url}/audio/speech``), both configured by naming
one of the organization's LLM ``providers`` in ``config/system``::

    {"settings": {"voice": {
        "transcription": {"provider": "<provider name or id>", "model": "whisper-1"},
        "synthesis": {"provider": "<provider name or id>", "model": "tts-1", "voice": "alloy"}}}}

The provider's key is decrypted for the call only; its base URL passes the outbound-address
guard. With no synthesis provider, ``espeak-ng`` (when installed) speaks locally. With neither,
the caller gets 503 ``VOICE_003`` — never a made-up transcript or sound.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import uuid
from dataclasses import dataclass

from django.conf import settings
from rest_framework import exceptions

from apps.agents import selectors
from apps.agents.models import Provider
from apps.agents.services import credential_use
from kai_platform.api.errors import ServiceUnavailable, codes
from kai_platform.api.errors.exceptions import KaiAPIException
from kai_platform.llm.netguard import check_url, guarded_http_client

OPENAI_AUDIO_TYPES = ("openai", "openai_compatible", "azure", "vllm", "ollama")
DEFAULT_STT_MODEL = "whisper-1"
DEFAULT_TTS_MODEL = "tts-1"
DEFAULT_TTS_VOICE = "alloy"
TIMEOUT_SECONDS = 60.0


class VoiceUnavailable(ServiceUnavailable):
    kai_code = codes.VOICE_SERVICE_UNAVAILABLE


class TranscriptionFailed(KaiAPIException):
    status_code = 502
    error_type = "transcription_failed"
    kai_code = codes.VOICE_TRANSCRIPTION_FAILED
    default_detail = "The speech provider could not transcribe the audio."


@dataclass
class Transcript:
    text: str
    language: str
    confidence: float
    provider: str


def _voice_config(organization) -> dict:
    value = (organization.settings or {}).get("voice")
    return value if isinstance(value, dict) else {}


def _provider(organization, ref) -> Provider | None:
    if not ref:
        return None
    queryset = Provider.objects.for_org(organization).filter(is_active=True).select_related("credential")
    try:
        found = queryset.filter(pk=uuid.UUID(str(ref))).first()
    except ValueError:
        found = None
    return found or queryset.filter(name=str(ref)).first()


def transcription_config(organization) -> tuple[Provider, dict] | None:
    config = _voice_config(organization).get("transcription") or {}
    provider = _provider(organization, config.get("provider"))
    if provider is None or provider.provider_type not in OPENAI_AUDIO_TYPES:
        return None
    return provider, config


def synthesis_config(organization) -> tuple[Provider, dict] | None:
    config = _voice_config(organization).get("synthesis") or {}
    provider = _provider(organization, config.get("provider"))
    if provider is None or provider.provider_type not in OPENAI_AUDIO_TYPES:
        return None
    return provider, config


def espeak_binary() -> str | None:
    name = settings.KAI_ESPEAK_BINARY
    return shutil.which(name) if name else None


def capabilities(organization) -> dict:
    stt = transcription_config(organization)
    tts = synthesis_config(organization)
    espeak = espeak_binary()
    return {
        "text_fallback": True,
        "transcription": {
            "available": stt is not None,
            "provider": stt[0].name if stt else None,
            "model": (stt[1].get("model") or DEFAULT_STT_MODEL) if stt else None,
        },
        "synthesis": {
            "available": tts is not None or espeak is not None,
            "provider": tts[0].name if tts else ("espeak-ng" if espeak else None),
            "model": (tts[1].get("model") or DEFAULT_TTS_MODEL) if tts else None,
            "formats": ["wav", "mp3"] if tts else (["wav"] if espeak else []),
        },
        "intent_parsing": True,
        "agent_routing": True,
        "wake_word": False,
        "training": True,
        "max_audio_bytes": settings.DATA_UPLOAD_MAX_MEMORY_SIZE,
    }


def _openai_client(organization, provider: Provider):
    # deferred: heavy — the OpenAI SDK, loaded on first use to keep process start fast
    import openai

    base_url = provider.base_url or ("https://api.openai.com/v1" if provider.provider_type == "openai" else "")
    if not base_url:
        raise VoiceUnavailable(f"Speech provider '{provider.name}' has no base_url.")
    allowlist = selectors.network_allowlist(organization=organization)
    try:
        check_url(base_url, allowlist)
    except Exception as exc:
        raise VoiceUnavailable(f"Speech provider '{provider.name}' may not be reached: {exc}") from exc
    api_key = credential_use(credential=provider.credential)["value"] if provider.credential is not None else "unused"
    timeout = provider.timeout_seconds or TIMEOUT_SECONDS
    return openai.OpenAI(
        base_url=base_url,
        api_key=api_key,
        timeout=timeout,
        max_retries=0,
        http_client=guarded_http_client(allowlist, timeout=timeout),
    )


def _language_code(value: str) -> str:
    """'en-US' → 'en' (transcription endpoints take ISO-639-1)."""
    return (value or "").split("-")[0].split("_")[0].lower()


def transcribe(organization, *, audio: bytes, filename: str, language: str = "") -> Transcript:
    # deferred: heavy — the OpenAI SDK, loaded on first use to keep process start fast
    import openai

    config = transcription_config(organization)
    if config is None:
        raise VoiceUnavailable(
            "No speech-to-text provider is configured for this organization "
            "(config/system settings.voice.transcription); send text_fallback instead."
        )
    provider, options = config
    client = _openai_client(organization, provider)
    kwargs = {
        "model": options.get("model") or DEFAULT_STT_MODEL,
        "file": (filename, audio),
        "response_format": "verbose_json",
    }
    if _language_code(language):
        kwargs["language"] = _language_code(language)
    try:
        result = client.audio.transcriptions.create(**kwargs)
    except openai.APIConnectionError as exc:
        raise VoiceUnavailable(f"Speech provider '{provider.name}' cannot be reached.") from exc
    except openai.APIStatusError as exc:
        raise TranscriptionFailed(f"Speech provider '{provider.name}' answered {exc.status_code}.") from exc
    data = result.model_dump() if hasattr(result, "model_dump") else dict(result)
    segments = data.get("segments") or []
    logprobs = [p for s in segments if isinstance(s, dict) and (p := s.get("avg_logprob")) is not None]
    confidence = round(math.exp(sum(logprobs) / len(logprobs)), 3) if logprobs else 1.0
    return Transcript(
        text=str(data.get("text") or "").strip(),
        language=str(data.get("language") or language or "")[:35],  # a language tag: at most 35 characters (RFC 5646)
        confidence=min(1.0, max(0.0, confidence)),
        provider=provider.name,
    )


def synthesize(
    organization,
    *,
    text: str,
    voice: str = "",
    language: str = "",
    speed: float | None = None,
    response_format: str = "wav",
) -> tuple[bytes, str, str]:
    """→ (audio bytes, content type, the engine that spoke)."""
    # deferred: heavy — the OpenAI SDK, loaded on first use to keep process start fast
    import openai

    config = synthesis_config(organization)
    if config is not None:
        provider, options = config
        client = _openai_client(organization, provider)
        kwargs = {
            "model": options.get("model") or DEFAULT_TTS_MODEL,
            "input": text,
            "voice": voice or options.get("voice") or DEFAULT_TTS_VOICE,
            "response_format": response_format,
        }
        if speed:
            kwargs["speed"] = speed
        try:
            response = client.audio.speech.create(**kwargs)
        except openai.APIConnectionError as exc:
            raise VoiceUnavailable(f"Speech provider '{provider.name}' cannot be reached.") from exc
        except openai.APIStatusError as exc:
            raise VoiceUnavailable(f"Speech provider '{provider.name}' answered {exc.status_code}.") from exc
        content_type = "audio/wav" if response_format == "wav" else f"audio/{response_format}"
        return response.read(), content_type, provider.name
    binary = espeak_binary()
    if binary is None:
        raise VoiceUnavailable(
            "No text-to-speech provider is configured (config/system settings.voice.synthesis) "
            "and espeak-ng is not installed."
        )
    if response_format != "wav":
        raise exceptions.ValidationError({"format": [f"espeak-ng speaks wav only, not {response_format}."]})
    args = [binary, "--stdout"]
    if voice or language:
        args += ["-v", (voice or language).lower()]
    if speed:
        args += ["-s", str(int(175 * speed))]
    try:
        done = subprocess.run([*args, "--", text], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise VoiceUnavailable(f"espeak-ng failed: {exc}") from exc
    if done.returncode != 0 or not done.stdout.startswith(b"RIFF"):
        stderr = done.stderr.decode(errors="replace")
        if "voice does not exist" in stderr:  # the caller named a voice/language espeak-ng lacks: their input
            field = "voice" if voice else "language"
            raise exceptions.ValidationError({field: [f"espeak-ng has no voice '{(voice or language)[:100]}'."]})
        raise VoiceUnavailable(f"espeak-ng failed: {stderr[:200]}")
    return done.stdout, "audio/wav", "espeak-ng"
