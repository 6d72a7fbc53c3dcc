from rest_framework import serializers

from apps.stepup.models import WebAuthnCredential
from kai_platform.api.serializers import JSONObjectField, KaiModelSerializer, KaiSerializer


class SetupRequestSerializer(KaiSerializer):
    name = serializers.CharField(required=False, allow_blank=True, max_length=100,
                                 help_text="A label for the authenticator (e.g. 'YubiKey 5').")
    credential = JSONObjectField(required=False, max_bytes=32768,
                                 help_text="The PublicKeyCredential from navigator.credentials.create(), JSON form. "
                                           "Omit it to get the registration options.")


class VerifyRequestSerializer(KaiSerializer):
    credential = JSONObjectField(required=False, max_bytes=32768,
                                 help_text="The PublicKeyCredential from navigator.credentials.get(), JSON form. "
                                           "Omit it to get the authentication options.")


class PasswordRequestSerializer(KaiSerializer):
    password = serializers.CharField(max_length=512, trim_whitespace=False)


class OptionsResponseSerializer(serializers.Serializer):
    public_key = serializers.JSONField(help_text="Options for the browser's WebAuthn call (JSON form).")
    expires_in = serializers.IntegerField()


class GrantSerializer(serializers.Serializer):
    method = serializers.CharField()
    session_id = serializers.CharField()
    granted_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    expires_in = serializers.IntegerField()


class GrantResponseSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    step_up = GrantSerializer()


class StepUpStateSerializer(serializers.Serializer):
    required = serializers.BooleanField()
    granted = serializers.BooleanField()
    grant = GrantSerializer(allow_null=True)
    methods = serializers.ListField(child=serializers.CharField())


class AuthenticatorSerializer(KaiModelSerializer):
    class Meta:
        model = WebAuthnCredential
        fields = ["id", "name", "credential_id", "aaguid", "transports", "device_type", "backed_up", "sign_count",
                  "created_at", "last_used_at"]
        read_only_fields = fields


class SetupResponseSerializer(AuthenticatorSerializer):
    success = serializers.BooleanField(default=True)

    class Meta(AuthenticatorSerializer.Meta):
        fields = ["success", *AuthenticatorSerializer.Meta.fields]
        read_only_fields = fields
