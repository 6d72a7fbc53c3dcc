"""WebAuthn authenticators a user registered for step-up verification (several per user).

Authenticators belong to the person, not to an organization: one security key serves every
organization the user is a member of. Step-up grants themselves are short-lived and live in
Redis (``apps.stepup.services``), bound to the user and the session that earned them."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models


class WebAuthnCredential(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webauthn_credentials")
    name = models.CharField(max_length=100, blank=True)
    #: the authenticator's credential id, base64url without padding (what browsers send as ``id``)
    credential_id = models.CharField(max_length=1400, unique=True)
    public_key = models.BinaryField(help_text="COSE-encoded credential public key.")
    sign_count = models.PositiveBigIntegerField(default=0)
    aaguid = models.CharField(max_length=36, blank=True)
    transports = ArrayField(models.CharField(max_length=20), default=list, blank=True)
    device_type = models.CharField(max_length=20, blank=True)
    backed_up = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("created_at",)
        verbose_name = "WebAuthn authenticator"

    def __str__(self) -> str:
        return f"{self.name or 'authenticator'} of {self.user_id}"


class BackupCode(models.Model):
    """One single-use recovery code of a user (``BiometricSetupResponse.backup_codes``, docs/stepup.md).

    Only a keyed digest is stored (``apps.stepup.services.backup_code_digest``: HMAC-SHA256 under
    a key derived from ``SECRET_KEY``, over the user id and the normalized code); the codes
    themselves are shown once, when issued. A code is spent by one conditional UPDATE
    (``used_at IS NULL`` → now), so it works exactly once however many requests race for it."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="stepup_backup_codes")
    digest = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("id",)
        constraints = [models.UniqueConstraint(fields=("user", "digest"), name="stepup_backup_code_user_digest")]
        verbose_name = "step-up backup code"

    def __str__(self) -> str:
        return f"backup code {self.pk} of {self.user_id}{' (used)' if self.used_at else ''}"
