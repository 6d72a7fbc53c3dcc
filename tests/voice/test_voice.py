"""Seed 002 voice: text fallback, audio through a configured OpenAI-compatible speech provider
(a local server, real SDK and HTTP), intent and agent routing, history, settings, capabilities,
synthesis (provider or espeak-ng), hub events, 503 VOICE_003 when nothing is configured."""

from __future__ import annotations

import base64
import shutil

import pytest

from apps.accounts.services import organization_settings_update
from apps.agents.services import agent_create, provider_create
from apps.audit.models import AuditEvent
from apps.events.models import Event
from apps.runs.models import Execution
from apps.voice.models import VoiceCommand
from tests.helpers import assert_envelope
from tests.voice.speech_server import SpeechServer, tiny_wav

pytestmark = pytest.mark.django_db

B = "/api/v1"


@pytest.fixture
def speech_server():
    with SpeechServer() as server:
        yield server


@pytest.fixture
def agents(member):
    travel = agent_create(
        organization=member.organization, actor=member.user, data={"name": "Travel Planner", "role": "travel agent"}
    )
    mail = agent_create(
        organization=member.organization, actor=member.user, data={"name": "Mail Bot", "role": "email assistant"}
    )
    return travel, mail


def _configure(member, server, *, synthesis=True):
    org = member.organization
    organization_settings_update(organization=org, actor=member.user, changes={"network_allowlist": ["127.0.0.1"]})
    org.refresh_from_db()
    provider_create(
        organization=org,
        actor=member.user,
        data={
            "name": "speech",
            "provider_type": "openai_compatible",
            "base_url": server.url,
            "api_key": "sk-speech-test",
        },
    )
    voice = {"transcription": {"provider": "speech", "model": "whisper-large-v3"}}
    if synthesis:
        voice["synthesis"] = {"provider": "speech", "model": "tts-1", "voice": "nova"}
    organization_settings_update(organization=org, actor=member.user, changes={"voice": voice})
    org.refresh_from_db()


def test_text_fallback_parses_intent_routes_and_records(member, client_for, agents):
    travel, mail = agents
    client = client_for(member)
    response = client.post(
        f"{B}/voice/process",
        {"text_fallback": "Ask the travel planner to find flights to Lisbon tomorrow at 9am", "language": "en-US"},
        format="json",
    )
    assert response.status_code == 200, response.content
    data = response.json()["data"]
    assert data["transcribed_text"].startswith("Ask the travel planner")
    assert data["input_type"] == "text" and data["command_understood"] is True
    assert data["intent"]["action"] == "search"
    assert data["intent"]["entities"]["times"] == ["tomorrow", "9am"]
    assert data["agent_routing"]["target_agent"] == travel.agent_number
    assert data["agent_routing"]["routed_by"] == "name" and data["agent_routing"]["global_command"] is False
    assert "Travel Planner" in data["response"]["text"] and data["execution_id"] is None

    by_number = client.post(
        f"{B}/voice/process",
        {"text_fallback": f"agent {mail.agent_number}, send the report to bob@example.com"},
        format="json",
    ).json()["data"]
    assert by_number["intent"]["action"] == "send_message"
    assert by_number["intent"]["entities"]["emails"] == ["bob@example.com"]
    assert by_number["agent_routing"]["target_agent"] == mail.agent_number

    unclear = client.post(f"{B}/voice/process", {"text_fallback": "blorp zzz"}, format="json").json()["data"]
    assert unclear["command_understood"] is False and unclear["response"]["requires_followup"] is True

    history = client.get(f"{B}/voice/commands").json()
    assert history["total"] == 3 and history["items"][0]["transcribed_text"] == "blorp zzz"
    types = list(
        Event.objects.filter(organization=member.organization, type__startswith="voice.").values_list("type", flat=True)
    )
    assert {"voice.command_received", "voice.processing", "voice.response_ready"} <= set(types)
    assert AuditEvent.objects.filter(organization=member.organization, action="voice_command.create").count() == 3


def test_audio_needs_a_configured_provider_and_never_fakes_a_transcript(member, client_for, agents):
    client = client_for(member)
    audio = base64.b64encode(tiny_wav()).decode()
    caps = client.get(f"{B}/voice/capabilities").json()
    assert caps["text_fallback"] is True and caps["transcription"]["available"] is False
    body = assert_envelope(client.post(f"{B}/voice/process", {"audio_data": audio}, format="json"), 503, "VOICE_003")
    assert "text_fallback" in body["detail"]
    assert not VoiceCommand.objects.for_org(member.organization).exists()
    # with a text fallback, the command still goes through (and says why)
    fallback = client.post(
        f"{B}/voice/process", {"audio_data": audio, "text_fallback": "status of Mail Bot"}, format="json"
    ).json()["data"]
    assert fallback["input_type"] == "text" and "text_fallback" in fallback["note"]
    assert fallback["intent"]["action"] == "get_status"
    assert_envelope(client.post(f"{B}/voice/process", {}, format="json"), 400, "GENERAL_001")


def test_audio_goes_to_the_configured_transcription_endpoint(member, client_for, agents, speech_server):
    travel, _ = agents
    _configure(member, speech_server)
    audio = tiny_wav(1200)
    speech_server.transcripts[audio] = "Travel planner, book a hotel in Rome for 3 nights"
    client = client_for(member)
    caps = client.get(f"{B}/voice/capabilities").json()
    assert caps["transcription"] == {"available": True, "provider": "speech", "model": "whisper-large-v3"}
    response = client.post(
        f"{B}/voice/process",
        {"audio_data": base64.b64encode(audio).decode(), "language": "it-IT", "execute": True},
        format="json",
    )
    assert response.status_code == 200, response.content
    data = response.json()["data"]
    sent = speech_server.requests[-1]
    assert sent["audio"] == audio and sent["fields"]["model"] == "whisper-large-v3"
    assert sent["fields"]["language"] == "it" and sent["authorization"] == "Bearer sk-speech-test"
    assert data["input_type"] == "audio" and data["transcribed_text"].startswith("Travel planner, book")
    assert 0.85 < data["confidence_score"] < 0.95 and data["detected_language"] == "it"
    assert data["intent"]["action"] == "schedule" and data["intent"]["entities"]["numbers"] == [3]
    assert data["agent_routing"]["target_agent"] == travel.agent_number
    # execute: the routed agent's run was accepted (the worker runs it)
    execution = Execution.objects.get(pk=data["execution_id"])
    assert execution.agent_id == travel.pk and execution.definition["voice_input"] is True
    assert execution.definition["action"] == "schedule"

    # audio the provider cannot transcribe → VOICE_001, nothing recorded for it
    before = VoiceCommand.objects.count()
    garbled = base64.b64encode(b"RIFF-not-speech").decode()
    assert_envelope(client.post(f"{B}/voice/process", {"audio_data": garbled}, format="json"), 502, "VOICE_001")
    assert VoiceCommand.objects.count() == before


def test_synthesize_with_provider_espeak_or_503(member, client_for, speech_server, settings):
    client = client_for(member)
    settings.KAI_ESPEAK_BINARY = ""
    assert client.get(f"{B}/voice/capabilities").json()["synthesis"]["available"] is False
    assert_envelope(client.post(f"{B}/voice/synthesize", {"text": "hello"}, format="json"), 503, "VOICE_003")

    if shutil.which("espeak-ng"):
        settings.KAI_ESPEAK_BINARY = "espeak-ng"
        spoken = client.post(f"{B}/voice/synthesize", {"text": "Your report is ready."}, format="json")
        assert spoken.status_code == 200 and spoken["Content-Type"] == "audio/wav"
        assert spoken["X-Voice-Engine"] == "espeak-ng"
        assert spoken.content[:4] == b"RIFF" and spoken.content[8:12] == b"WAVE" and len(spoken.content) > 5000

    _configure(member, speech_server)
    spoken = client.post(f"{B}/voice/synthesize", {"text": "Ciao", "speed": 1.5}, format="json")
    assert spoken.status_code == 200 and spoken["X-Voice-Engine"] == "speech"
    assert spoken.content == tiny_wav()
    assert speech_server.requests[-1]["json"] == {
        "model": "tts-1",
        "input": "Ciao",
        "voice": "nova",
        "response_format": "wav",
        "speed": 1.5,
    }


def test_settings_are_per_member_and_history_is_private(make_member, client_for, agents, member):
    colleague = make_member("user", organization=member.organization)
    owner, user = client_for(member), client_for(colleague)
    assert owner.get(f"{B}/voice/settings").json()["language"] == "en-US"
    changed = owner.post(
        f"{B}/voice/settings", {"language": "de-DE", "speech_rate": 1.25, "wake_words": ["hallo kai"]}, format="json"
    ).json()
    assert changed["language"] == "de-DE" and changed["speech_rate"] == 1.25 and changed["noise_suppression"] is True
    assert user.get(f"{B}/voice/settings").json()["language"] == "en-US"
    assert_envelope(owner.post(f"{B}/voice/settings", {"volume": 3}, format="json"), 400)

    owner.post(f"{B}/voice/process", {"text_fallback": "list agents"}, format="json")
    user.post(f"{B}/voice/process", {"text_fallback": "stop all agents"}, format="json")
    assert [c["transcribed_text"] for c in user.get(f"{B}/voice/commands").json()["items"]] == ["stop all agents"]
    assert owner.get(f"{B}/voice/commands").json()["total"] == 2


def test_agent_voice_route_targets_that_agent(member, client_for, agents):
    _, mail = agents
    response = client_for(member).post(
        f"{B}/agents/{mail.pk}/voice", {"text_input": "summarize my inbox"}, format="json"
    )
    assert response.status_code == 200, response.content
    data = response.json()["data"]
    assert data["agent_routing"]["target_agent"] == mail.agent_number
    assert data["command_understood"] is True and data["agent_response"]["status"] == "queued"
    assert Execution.objects.get(pk=data["agent_response"]["execution_id"]).agent_id == mail.pk


def test_audio_is_the_base64_the_document_states(member, client_for):
    """``audio_data`` carries its encoding as a pattern in the document, and the server checks that same
    pattern: a value the document admits decodes (here: 503, no speech provider), one it refuses is a 400."""
    import re

    from drf_spectacular.generators import SchemaGenerator

    document = SchemaGenerator().get_schema(request=None, public=True)
    audio = document["components"]["schemas"]["VoiceProcessRequest"]["properties"]["audio_data"]["oneOf"][0]
    pattern = re.compile(audio["pattern"])
    client = client_for(member)
    for value in ("0", "AAAA===", "data:x,", "data:audio/wav;base64,A", "AA=A"):
        assert pattern.search(value) is None, value
        response = client.post(f"{B}/voice/process", {"audio_data": value}, format="json")
        assert_envelope(response, 400, "GENERAL_001")
    for value in ("AAAA", "AAAA=", "AB==", "data:audio/wav;base64,AAA=", base64.b64encode(tiny_wav()).decode()):
        assert pattern.search(value), value
        assert_envelope(client.post(f"{B}/voice/process", {"audio_data": value}, format="json"), 503, "VOICE_003")


def test_a_long_language_tag_from_preferences_is_recorded(member, client_for):
    """A member's ``default_voice_language`` may be any language tag up to 35 characters (RFC 5646),
    and the voice routes record it as it is (they were cut at 20: a 500)."""
    client = client_for(member)
    tag = "en-Latn-GB-oxendict-abcdefgh"  # 28 characters
    assert client.patch("/api/v1/auth/preferences", {"default_voice_language": tag}, format="json").status_code == 200
    assert client.get(f"{B}/voice/settings").json()["language"] == tag
    response = client.post(f"{B}/voice/process", {"text_fallback": "list agents"}, format="json")
    assert response.status_code == 200, response.content
    assert VoiceCommand.objects.get(organization=member.organization).language == tag
    too_long = client.post(f"{B}/voice/process", {"text_fallback": "list agents", "language": "a" * 36}, format="json")
    assert_envelope(too_long, 400)
