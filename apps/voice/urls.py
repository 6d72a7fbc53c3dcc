"""API routes of apps.voice (``voice/*`` and ``agents/{id}/voice``: docs/voice.md)."""

from django.urls import path

from apps.voice import views
from kai_platform.api.routers import router

router.register("voice/commands", views.VoiceCommandViewSet, basename="voice-command")

urlpatterns = [
    path("voice/process", views.VoiceProcessView.as_view(), name="voice-process"),
    path("voice/settings", views.VoiceSettingsView.as_view(), name="voice-settings"),
    path("voice/capabilities", views.VoiceCapabilitiesView.as_view(), name="voice-capabilities"),
    path("voice/train", views.VoiceTrainView.as_view(), name="voice-train"),
    path("voice/synthesize", views.VoiceSynthesizeView.as_view(), name="voice-synthesize"),
    path("agents/<uuid:pk>/voice", views.AgentVoiceView.as_view(), name="agent-voice"),
]
