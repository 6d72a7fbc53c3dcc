"""Serializers of credentials, external API keys, verification, backup and restore."""

from __future__ import annotations

from rest_framework import serializers

from apps.agents.models import Credential, CredentialType
from kai_platform.api.serializers import JSONObjectField, KaiModelSerializer, KaiSerializer

# --- credentials -------------------------------------------------------------------------------


class CredentialDataSerializer(KaiSerializer):
    value = serializers.CharField(max_length=20_000, trim_whitespace=False)
    additional_fields = serializers.DictField(child=serializers.CharField(max_length=5000), required=False)

    def validate(self, attrs):
        # a PUT/PATCH is partial down to here too: credential_data, when given, carries its value
        if "value" not in attrs:
            raise serializers.ValidationError({"value": ["This field is required."]})
        return attrs


class CredentialMetadataSerializer(KaiSerializer):
    description = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)
    auto_rotate = serializers.BooleanField(required=False)
    last_used = serializers.DateTimeField(read_only=True, allow_null=True)
    usage_count = serializers.IntegerField(read_only=True)


class CredentialSerializer(KaiModelSerializer):
    """Seed 002 credentials. The value is write-only; answers show ``masked_value`` only."""

    credential_data = CredentialDataSerializer(write_only=True, required=True)  # PUT/PATCH are partial
    metadata = CredentialMetadataSerializer(required=False)
    masked_value = serializers.CharField(source="masked", read_only=True)
    biometric_verification = JSONObjectField(
        write_only=True,
        required=False,
        help_text="Seed 002 BiometricCredential (or a WebAuthn assertion) answering this session's "
        "auth/biometric/verify challenge: the step-up for this call where the organization requires it.",
    )

    class Meta:
        model = Credential
        fields = [
            "id",
            "name",
            "service_name",
            "credential_type",
            "credential_data",
            "masked_value",
            "encryption_key_id",
            "metadata",
            "biometric_verification",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "encryption_key_id", "created_by", "created_at", "updated_at"]
        extra_kwargs = {"name": {"required": False}}

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["metadata"] = {
            "description": instance.description,
            "expires_at": instance.expires_at,
            "last_used": instance.last_used,
            "usage_count": instance.usage_count,
            "auto_rotate": instance.auto_rotate,
        }
        return data

    def validate(self, attrs):
        attrs.pop("biometric_verification", None)
        if self.instance is None:
            if "credential_data" not in attrs:
                raise serializers.ValidationError({"credential_data": ["This field is required."]})
            if not attrs.get("service_name"):
                raise serializers.ValidationError({"service_name": ["This field is required."]})
        return attrs

    @staticmethod
    def to_changes(attrs: dict) -> dict:
        changes = {k: v for k, v in attrs.items() if k in ("name", "service_name", "credential_type")}
        data = attrs.get("credential_data") or {}
        if "value" in data:
            changes["value"] = data["value"]
        if "additional_fields" in data:
            changes["additional_fields"] = data["additional_fields"]
        changes.update(attrs.get("metadata") or {})
        return changes


class ExternalApiKeySerializer(KaiModelSerializer):
    """Seed 001 ``api-keys``: keys for external services, on the same encrypted Credential model."""

    service = serializers.CharField(source="service_name", max_length=100, required=False)
    #: required to create; a PUT/PATCH changes what it names (the document's PUT body is the partial one)
    key = serializers.CharField(write_only=True, max_length=20_000, trim_whitespace=False)
    key_preview = serializers.CharField(source="masked", read_only=True)

    class Meta:
        model = Credential
        fields = [
            "id",
            "name",
            "service",
            "key",
            "key_preview",
            "description",
            "expires_at",
            "last_used",
            "usage_count",
            "encryption_key_id",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "last_used", "usage_count", "encryption_key_id", "created_at", "updated_at"]


class CredentialValueSerializer(KaiSerializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    service_name = serializers.CharField()
    credential_type = serializers.ChoiceField(choices=CredentialType.choices)
    value = serializers.CharField()
    additional_fields = serializers.DictField()


class CredentialVerifyRequestSerializer(KaiSerializer):
    credential_id = serializers.UUIDField()
    value = serializers.CharField(
        required=False, trim_whitespace=False, help_text="Check that this is the stored value."
    )
    biometric_verification = JSONObjectField(required=False)


class CredentialVerifyResponseSerializer(KaiSerializer):
    credential_id = serializers.UUIDField()
    valid = serializers.BooleanField()
    decryptable = serializers.BooleanField()
    expired = serializers.BooleanField()
    matches = serializers.BooleanField(allow_null=True)
    encryption_key_id = serializers.CharField()
    current_key = serializers.BooleanField()


class BackupRequestSerializer(KaiSerializer):
    passphrase = serializers.CharField(min_length=12, max_length=1000, trim_whitespace=False)


class BackupKdfSerializer(KaiSerializer):
    """The scrypt parameters a backup was sealed with; a restore takes only costs the server can pay
    (``n`` a power of two up to 2**17: 128 MiB at r=8)."""

    name = serializers.ChoiceField(choices=["scrypt"])
    n = serializers.IntegerField(min_value=2, max_value=2**17)
    r = serializers.IntegerField(min_value=1, max_value=64)
    p = serializers.IntegerField(min_value=1, max_value=16)
    salt = serializers.CharField(max_length=200)

    def validate_n(self, value):
        if value & (value - 1):
            raise serializers.ValidationError("Must be a power of two.")
        return value


class BackupResponseSerializer(KaiSerializer):
    backup = serializers.CharField()
    count = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    kdf = BackupKdfSerializer()
    cipher = serializers.CharField()


class RestoreRequestSerializer(KaiSerializer):
    backup = serializers.CharField()
    kdf = BackupKdfSerializer()
    passphrase = serializers.CharField(trim_whitespace=False)
    overwrite = serializers.BooleanField(default=False)


class RestoreResponseSerializer(KaiSerializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    skipped = serializers.IntegerField()
