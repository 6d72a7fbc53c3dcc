from django.urls import path

from apps.accounts import views
from kai_platform.api.routers import router

router.register("auth/tokens", views.ApiKeyViewSet, basename="api-key")

urlpatterns = [
    path("auth/register", views.RegisterView.as_view(), name="auth-register"),
    path("auth/login", views.LoginView.as_view(), name="auth-login"),
    path("auth/refresh", views.RefreshView.as_view(), name="auth-refresh"),
    path("auth/logout", views.LogoutView.as_view(), name="auth-logout"),
    path("auth/session", views.SessionView.as_view(), name="auth-session"),
    path("auth/me", views.MeView.as_view(), name="auth-me"),
    path("auth/preferences", views.PreferencesView.as_view(), name="auth-preferences"),
    path("auth/magic-link", views.MagicLinkView.as_view(), name="auth-magic-link"),
    path("auth/password", views.PasswordChangeView.as_view(), name="auth-password"),
    path("auth/password-reset", views.PasswordResetView.as_view(), name="auth-password-reset"),
    path("auth/password-reset/confirm", views.PasswordResetConfirmView.as_view(), name="auth-password-reset-confirm"),
    path("auth/verify-magic", views.VerifyMagicView.as_view(), name="auth-verify-magic"),
    path("config/system", views.SystemConfigView.as_view(), name="config-system"),
    path("config/user", views.UserConfigView.as_view(), name="config-user"),
]
