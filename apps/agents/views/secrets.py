"""Credential and external API-key endpoints: CRUD, reveal, verify, backup and restore."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.agents import services
from apps.agents.models import Credential, CredentialType
from apps.agents.serializers import (
    BackupRequestSerializer,
    BackupResponseSerializer,
    CredentialSerializer,
    CredentialValueSerializer,
    CredentialVerifyRequestSerializer,
    CredentialVerifyResponseSerializer,
    ExternalApiKeySerializer,
    RestoreRequestSerializer,
    RestoreResponseSerializer,
)
from apps.agents.views.common import BUILDER_ROLES, UUID_LOOKUP, WRITE_ACTIONS
from apps.stepup.permissions import RequiresStepUp, check_step_up
from kai_platform.api.serializers import validated
from kai_platform.tenancy.permissions import IsOrganizationMember
from kai_platform.tenancy.roles import ADMIN_ROLES
from kai_platform.tenancy.viewsets import TenantScopedViewSet

# --- secrets -----------------------------------------------------------------------------------


@extend_schema(tags=["secrets"])
class CredentialViewSet(TenantScopedViewSet):
    """Seed 002 credentials: encrypted at rest, masked in every answer; ``{id}/value`` (owner/admin,
    after a fresh step-up) returns the clear value and is audited."""

    model = Credential
    serializer_class = CredentialSerializer
    lookup_value_regex = UUID_LOOKUP
    filterset_fields = ["service_name", "credential_type"]
    action_roles = {
        **{a: BUILDER_ROLES for a in WRITE_ACTIONS},
        "verify": BUILDER_ROLES,
        "value": ADMIN_ROLES,
        "backup": ADMIN_ROLES,
        "restore": ADMIN_ROLES,
    }
    #: seed 002 credential management (store, retrieve, change, delete, backup) needs step-up where asked for
    permission_classes = [IsOrganizationMember, RequiresStepUp]
    step_up_actions = {*WRITE_ACTIONS, "value", "backup", "restore"}
    #: answers stored secrets sealed: a fresh grant whatever the setting (``value`` checks it once the
    #: credential is found, so another organization's id stays a 404)
    step_up_always_actions = {"backup"}

    def perform_create(self, serializer):
        attrs = serializer.validated_data
        changes = CredentialSerializer.to_changes(attrs)
        serializer.instance = services.credential_create(
            organization=self.organization,
            actor=self.request.user,
            name=changes.pop("name", None) or attrs["service_name"],
            service_name=changes.pop("service_name"),
            credential_type=changes.pop("credential_type", CredentialType.API_KEY),
            value=changes.pop("value"),
            additional_fields=changes.pop("additional_fields", None),
            **changes,
        )

    def perform_update(self, serializer):
        serializer.instance = services.credential_update(
            credential=serializer.instance,
            actor=self.request.user,
            changes=CredentialSerializer.to_changes(serializer.validated_data),
        )

    def perform_destroy(self, instance):
        services.credential_delete(credential=instance, actor=self.request.user)

    @extend_schema(responses={200: CredentialValueSerializer})
    @action(detail=True, methods=["get"])
    def value(self, request, pk=None):
        credential = self.get_object()
        check_step_up(request, always=True)  # a stored secret in clear: a fresh grant, whatever the setting
        secret = services.credential_reveal(credential=credential, actor=request.user)
        return Response(
            {
                "id": credential.pk,
                "name": credential.name,
                "service_name": credential.service_name,
                "credential_type": credential.credential_type,
                "value": secret["value"],
                "additional_fields": secret.get("additional_fields") or {},
            }
        )

    @extend_schema(request=CredentialVerifyRequestSerializer, responses={200: CredentialVerifyResponseSerializer})
    @action(detail=False, methods=["post"])
    def verify(self, request):
        data = validated(CredentialVerifyRequestSerializer, request)
        credential = get_object_or_404(self.get_queryset(), pk=data["credential_id"])
        return Response(services.credential_verify(credential=credential, value=data.get("value")))

    @extend_schema(request=BackupRequestSerializer, responses={200: BackupResponseSerializer})
    @action(detail=False, methods=["post"])
    def backup(self, request):
        data = validated(BackupRequestSerializer, request)
        return Response(
            services.credentials_backup(
                organization=self.organization, actor=request.user, passphrase=data["passphrase"]
            )
        )

    @extend_schema(request=RestoreRequestSerializer, responses={200: RestoreResponseSerializer})
    @action(detail=False, methods=["post"])
    def restore(self, request):
        data = validated(RestoreRequestSerializer, request)
        return Response(
            services.credentials_restore(
                organization=self.organization,
                actor=request.user,
                backup=data["backup"],
                kdf=data["kdf"],
                passphrase=data["passphrase"],
                overwrite=data["overwrite"],
            )
        )


@extend_schema(tags=["secrets"])
class ExternalApiKeyViewSet(TenantScopedViewSet):
    """Seed 001 ``api-keys``: the organization's keys for external services (credentials of type api_key)."""

    model = Credential
    serializer_class = ExternalApiKeySerializer
    lookup_value_regex = UUID_LOOKUP
    action_roles = {a: BUILDER_ROLES for a in WRITE_ACTIONS}
    permission_classes = [IsOrganizationMember, RequiresStepUp]
    step_up_actions = set(WRITE_ACTIONS)

    def scope_queryset(self, queryset):
        return queryset.filter(credential_type=CredentialType.API_KEY)

    def perform_create(self, serializer):
        attrs = serializer.validated_data
        serializer.instance = services.credential_create(
            organization=self.organization,
            actor=self.request.user,
            name=attrs["name"],
            # the service defaults to the name, cut to the service's 100 characters (a name may have 200)
            service_name=attrs.get("service_name") or attrs["name"][:100],
            value=attrs["key"],
            credential_type=CredentialType.API_KEY,
            description=attrs.get("description", ""),
            expires_at=attrs.get("expires_at"),
        )

    def perform_update(self, serializer):
        attrs = dict(serializer.validated_data)
        if "key" in attrs:
            attrs["value"] = attrs.pop("key")
        serializer.instance = services.credential_update(
            credential=serializer.instance, actor=self.request.user, changes=attrs
        )

    def perform_destroy(self, instance):
        services.credential_delete(credential=instance, actor=self.request.user)
