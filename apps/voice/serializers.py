import base64
import binascii
import re

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.voice.intents import normalize_phrase
from apps.voice.models import VoiceCommand
from kai_platform.api.schema import requires_one_of
from kai_platform.api.serializers import JSONObjectField, KaiModelSerializer, KaiSerializer

AUDIO_FORMATS = ("wav", "mp3", "m4a", "webm", "ogg", "flac", "mp4", "mpeg", "mpga")


#: base64 audio as the document states it and ``decode_audio`` takes it: padded standard base64, after an optional
#: ``data:`` URL head whose comma is among the first 200 characters; some audio (empty audio is no audio: a 400)
BASE64_AUDIO = (
    "^(?:data:[^,\\u0000]{0,194},)?"
    "(?:(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)|(?:[A-Za-z0-9+/]{4})+={0,2})$"
)
_BASE64_AUDIO = re.compile(BASE64_AUDIO.replace("$", "\\Z"))


def decode_audio(value: str) -> bytes:
    """Base64 (or a ``data:`` URL) → bytes: exactly what ``BASE64_AUDIO`` (the document's pattern) admits."""
    if not value:
        return b""
    if not _BASE64_AUDIO.match(value):
        raise serializers.ValidationError("Not valid base64.")
    if value.startswith("data:") and "," in value[:200]:
        value = value.split(",", 1)[1]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise serializers.ValidationError("Not valid base64.")


@extend_schema_field({"type": "string", "pattern": BASE64_AUDIO})
class AudioField(serializers.CharField):
    """Base64 audio (or a ``data:`` URL): the document states the encoding the view decodes."""


class VoiceContextSerializer(KaiSerializer):
    active_agent = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    conversation_history = serializers.ListField(
        child=serializers.CharField(max_length=2000), required=False, max_length=50
    )
    user_preferences = JSONObjectField(required=False)


@requires_one_of("audio_data", "text_fallback")
class VoiceProcessSerializer(KaiSerializer):
    audio_data = AudioField(
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        help_text="Base64-encoded audio (sent to the configured speech-to-text provider).",
    )
    audio_format = serializers.ChoiceField(choices=AUDIO_FORMATS, default="wav")
    text_fallback = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=4000,
        help_text="The command as text: used when there is no audio or it cannot be transcribed.",
    )
    language = serializers.CharField(required=False, allow_blank=True, max_length=35)
    # drf-stubs read a declared field named "context" as overriding Field.context (DRF moves it off the class)
    context = VoiceContextSerializer(required=False)  # type: ignore[assignment]
    execute = serializers.BooleanField(
        default=False,
        help_text="Start a run of the routed agent (agents/{id}/execute semantics) when the command was understood.",
    )

    def validate_audio_data(self, value):
        return decode_audio(value)


@requires_one_of("audio_data", "text_input")
class AgentVoiceSerializer(KaiSerializer):
    """Seed 002 ``POST agents/{id}/voice`` (``VoiceCommandRequest``)."""

    audio_data = AudioField(required=False, allow_blank=True, trim_whitespace=False, help_text="Base64-encoded audio.")
    audio_format = serializers.ChoiceField(choices=AUDIO_FORMATS, default="wav")
    text_input = serializers.CharField(required=False, allow_blank=True, max_length=4000)
    language = serializers.CharField(required=False, allow_blank=True, max_length=35)
    # drf-stubs read a declared field named "context" as overriding Field.context (DRF moves it off the class)
    context = JSONObjectField(required=False)  # type: ignore[assignment]
    execute = serializers.BooleanField(default=True)

    def validate_audio_data(self, value):
        return decode_audio(value)


class VoiceCommandSerializer(KaiModelSerializer):
    target_agent_id = serializers.UUIDField(read_only=True, allow_null=True)

    class Meta:
        model = VoiceCommand
        fields = [
            "id",
            "input_type",
            "language",
            "detected_language",
            "transcribed_text",
            "confidence_score",
            "audio_bytes",
            "stt_provider",
            "intent",
            "routing",
            "understood",
            "target_agent_id",
            "response_text",
            "execution_id",
            "processing_ms",
            "created_by",
            "created_at",
        ]
        read_only_fields = fields


class VoiceSettingsSerializer(KaiSerializer):
    language = serializers.CharField(required=False, max_length=35)
    voice_id = serializers.CharField(required=False, allow_blank=True, max_length=100)
    speech_rate = serializers.FloatField(required=False, min_value=0.25, max_value=4.0)
    pitch = serializers.FloatField(required=False, min_value=0.0, max_value=2.0)
    volume = serializers.FloatField(required=False, min_value=0.0, max_value=1.0)
    wake_word_enabled = serializers.BooleanField(required=False)
    wake_words = serializers.ListField(child=serializers.CharField(max_length=50), required=False, max_length=10)
    noise_suppression = serializers.BooleanField(required=False)
    auto_transcription = serializers.BooleanField(required=False)


class SynthesizeSerializer(KaiSerializer):
    text = serializers.CharField(max_length=4096)
    voice = serializers.CharField(required=False, allow_blank=True, max_length=100)
    language = serializers.CharField(required=False, allow_blank=True, max_length=35)
    speed = serializers.FloatField(required=False, min_value=0.25, max_value=4.0)
    format = serializers.ChoiceField(choices=["wav", "mp3"], default="wav")


class TrainSerializer(KaiSerializer):
    """Seed 002 ``POST voice/train``: phrases that mean ``intent`` for this organization."""

    intent = serializers.RegexField(
        r"^[a-z][a-z0-9_]{0,49}$",
        max_length=50,
        help_text="An action name: a built-in one (search, execute, …) or your own, in lower case with underscores.",
    )
    phrases = serializers.ListField(child=serializers.CharField(max_length=200), min_length=1, max_length=100)

    def validate_phrases(self, value):
        cleaned = list(dict.fromkeys(p for p in (normalize_phrase(v) for v in value) if p))
        if not cleaned:
            raise serializers.ValidationError("Give at least one phrase with a word in it.")
        return cleaned


class TrainDeleteSerializer(KaiSerializer):
    intent = serializers.CharField(max_length=50)


class TrainedIntentSerializer(serializers.Serializer):
    intent = serializers.CharField()
    phrases = serializers.ListField(child=serializers.CharField())


class TrainResponseSerializer(serializers.Serializer):
    intents = TrainedIntentSerializer(many=True)
    total_phrases = serializers.IntegerField()
    added = serializers.IntegerField(required=False)
