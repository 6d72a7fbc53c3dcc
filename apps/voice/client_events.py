"""Hub client events of the voice app (``apps.events.client_events``): thin adapters over its REST
services, registered by its ``AppConfig.ready``."""

from __future__ import annotations

from apps.events.client_events import register


def _views():
    # deferred: start-up — AppConfig.ready loads this module in every process; views and serializers load on the first client event
    from apps.voice import views

    return views


@register("voice:command", view=lambda: _views().VoiceProcessView, action=None, method="POST")
def _voice_command(*, user, auth, data, request):
    """``POST voice/process`` (``VoiceProcessingRequest``, docs/voice.md)."""
    # deferred: start-up — AppConfig.ready loads this module in every process; views and serializers load on the first client event
    from apps.voice import services
    from apps.voice.serializers import VoiceProcessSerializer
    from apps.voice.views import _process_body

    body = {key: value for key, value in data.items() if key != "request_id"}
    serializer = VoiceProcessSerializer(data=body, context={"request": request})
    serializer.is_valid(raise_exception=True)
    valid = serializer.validated_data
    language = (
        valid.get("language") or services.voice_settings_get(organization=auth.organization, user=user)["language"]
    )
    command = services.voice_process(
        organization=auth.organization,
        actor=user,
        text_fallback=valid.get("text_fallback", ""),
        audio=valid.get("audio_data") or None,
        audio_filename=f"audio.{valid['audio_format']}",
        language=language,
        context=valid.get("context") or {},
        execute=valid["execute"],
        source="websocket",
    )
    return {"success": True, **_process_body(command)}


@register("voice:stop_listening", view=lambda: _views().VoiceProcessView, action=None, method="POST")
def _voice_stop_listening(*, user, auth, data, request):
    """Nothing listens on the server between commands (audio arrives whole in ``voice:command``)."""
    return {"success": True, "listening": False}
