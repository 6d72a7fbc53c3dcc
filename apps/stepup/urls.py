"""API routes of apps.stepup."""

from django.urls import path

from apps.stepup import views

urlpatterns = [
    path("auth/biometric/setup", views.BiometricSetupView.as_view(), name="auth-biometric-setup"),
    path("auth/biometric/verify", views.BiometricVerifyView.as_view(), name="auth-biometric-verify"),
    path("auth/biometric/credentials", views.BiometricCredentialListView.as_view(), name="auth-biometric-credentials"),
    path(
        "auth/biometric/credentials/<uuid:pk>",
        views.BiometricCredentialDetailView.as_view(),
        name="auth-biometric-credential",
    ),
    path("auth/biometric/backup-codes", views.BackupCodesView.as_view(), name="auth-biometric-backup-codes"),
    path("auth/step-up", views.StepUpStateView.as_view(), name="auth-step-up"),
    path("auth/step-up/password", views.StepUpPasswordView.as_view(), name="auth-step-up-password"),
]
