"""Per-organization SSO connections (OIDC / SAML 2.0), the identities they link, one-time sign-in
codes, SCIM tokens and SCIM groups."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from kai_platform.tenancy.models import TenantModel
from kai_platform.tenancy.roles import Role


class Protocol(models.TextChoices):
    OIDC = "oidc", "OpenID Connect"
    SAML = "saml", "SAML 2.0"


class SSOConnection(TenantModel):
    """One identity provider for an organization. The client secret is stored encrypted
    (``apps.agents.crypto``) and never shown again."""

    protocol = models.CharField(max_length=8, choices=Protocol.choices)
    name = models.CharField(max_length=100, blank=True)
    # OIDC
    issuer_url = models.URLField(max_length=500, blank=True, help_text="Issuer or discovery (.well-known) URL.")
    client_id = models.CharField(max_length=300, blank=True)
    client_secret_encrypted = models.TextField(blank=True)
    secret_key_id = models.CharField(max_length=16, blank=True)
    scopes = models.JSONField(default=list, blank=True)
    # SAML
    idp_metadata_xml = models.TextField(blank=True)
    idp_metadata_url = models.URLField(max_length=500, blank=True)
    idp_entity_id = models.CharField(max_length=500, blank=True)
    idp_sso_url = models.URLField(max_length=500, blank=True)
    idp_x509cert = models.TextField(blank=True)
    # membership policy
    allowed_domains = models.JSONField(default=list, blank=True)
    verified_domains = models.JSONField(default=list, blank=True)
    domain_verification_token = models.CharField(max_length=64, blank=True)
    domains_confirmed_by_staff = models.BooleanField(
        default=False, help_text="Platform staff confirmed the organization owns every allowed domain."
    )
    default_role = models.CharField(max_length=20, choices=Role.choices, default=Role.USER)
    role_claim = models.CharField(max_length=100, blank=True, default="groups")
    role_mapping = models.JSONField(default=dict, blank=True, help_text="Claim value → role.")
    redirect_uris = models.JSONField(
        default=list, blank=True, help_text="Where API sign-ins may send their one-time code."
    )
    enforced = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)

    class Meta(TenantModel.Meta):
        verbose_name = "SSO connection"
        constraints = [models.UniqueConstraint(fields=["organization"], name="sso_one_connection_per_org")]

    def __str__(self) -> str:
        return f"{self.get_protocol_display()} for {self.organization_id}"

    @property
    def provider_id(self) -> str:
        """The allauth provider id (OIDC) / organization slug (SAML) of this connection."""
        return f"kai-{self.pk.hex}"

    @property
    def domains_verified(self) -> bool:
        wanted = {d.lower() for d in self.allowed_domains}
        return bool(wanted) and (self.domains_confirmed_by_staff or wanted <= set(self.verified_domains))


class SSOIdentity(TenantModel):
    """A user as the connection's identity provider knows them (``sub`` / NameID)."""

    connection = models.ForeignKey(SSOConnection, on_delete=models.CASCADE, related_name="identities")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sso_identities")
    subject = models.CharField(max_length=500)
    email = models.EmailField()
    claims = models.JSONField(default=dict, blank=True)
    last_login_at = models.DateTimeField(null=True, blank=True)

    class Meta(TenantModel.Meta):
        verbose_name = "SSO identity"
        verbose_name_plural = "SSO identities"
        constraints = [models.UniqueConstraint(fields=["connection", "subject"], name="sso_identity_subject")]


class SSOLoginCode(models.Model):
    """A single-use code (60 s) an API client exchanges for its token pair; only its digest is kept."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    code_hash = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="+")
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    @property
    def is_usable(self) -> bool:
        return self.used_at is None and self.expires_at > timezone.now()


class ScimToken(TenantModel):
    """A bearer token ``scim_<prefix>_<secret>`` the organization's IdP provisions with."""

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    token_hash = models.CharField(max_length=64)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta(TenantModel.Meta):
        verbose_name = "SCIM token"


class ScimUser(TenantModel):
    """The SCIM view of one member: its ``externalId`` and whether the IdP has it active. The
    membership itself is removed while inactive (its role kept here for reactivation)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    external_id = models.CharField(max_length=300, blank=True)
    active = models.BooleanField(default=True)
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.USER)

    class Meta(TenantModel.Meta):
        verbose_name = "SCIM user"
        constraints = [models.UniqueConstraint(fields=["organization", "user"], name="scim_user_per_org")]


class ScimGroup(TenantModel):
    """A SCIM group; its ``displayName`` maps to a role through the connection's role mapping."""

    display_name = models.CharField(max_length=200)
    external_id = models.CharField(max_length=300, blank=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="+", blank=True)

    class Meta(TenantModel.Meta):
        verbose_name = "SCIM group"
        constraints = [models.UniqueConstraint(fields=["organization", "display_name"], name="scim_group_name")]
