from rest_framework import serializers

from apps.stepup.models import WebAuthnCredential
from kai_platform.api.serializers import JSONObjectField, KaiModelSerializer, KaiSerializer


class SetupRequestSerializer(KaiSerializer):
    name = serializers.CharField(
        required=False, allow_blank=True, max_length=100, help_text="A label for the authenticator (e.g. 'YubiKey 5')."
    )
    credential = JSONObjectField(
        required=False,
        max_bytes=32768,
        help_text="The PublicKeyCredential from navigator.credentials.create(), JSON form. "
        "Omit it to get the registration options.",
    )


class VerifyRequestSerializer(KaiSerializer):
    credential = JSONObjectField(
        required=False,
        max_bytes=32768,
        help_text="The PublicKeyCredential from navigator.credentials.get(), JSON form. "
        "Omit it (and backup_code) to get the authentication options.",
    )
    backup_code = serializers.CharField(
        required=False,
        max_length=64,
        trim_whitespace=True,
        help_text="One of your unused backup codes (xxxxx-xxxxx), instead of an assertion; it is spent by this call.",
    )

    def validate(self, attrs):
        if attrs.get("credential") and attrs.get("backup_code"):
            raise serializers.ValidationError({"backup_code": ["Send either credential or backup_code, not both."]})
        return attrs


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
    # the metaclass moves declared fields off the class, so Field.required (a bool) is untouched
    required = serializers.BooleanField()  # type: ignore[assignment]
    granted = serializers.BooleanField()
    grant = GrantSerializer(allow_null=True)
    methods = serializers.ListField(child=serializers.CharField())


class AuthenticatorSerializer(KaiModelSerializer):
    class Meta:
        model = WebAuthnCredential
        fields = [
            "id",
            "name",
            "credential_id",
            "aaguid",
            "transports",
            "device_type",
            "backed_up",
            "sign_count",
            "created_at",
            "last_used_at",
        ]
        read_only_fields = fields


class SetupResponseSerializer(AuthenticatorSerializer):
    success = serializers.BooleanField(default=True)
    backup_codes = serializers.ListField(
        child=serializers.CharField(),
        read_only=True,
        help_text="Ten single-use recovery codes when this is your first authenticator (shown only now; "
        "store them safely), else empty.",
    )

    class Meta(AuthenticatorSerializer.Meta):
        fields = ["success", *AuthenticatorSerializer.Meta.fields, "backup_codes"]
        read_only_fields = fields


class BackupCodesStateSerializer(serializers.Serializer):
    remaining = serializers.IntegerField(help_text="Unused backup codes.")
    total = serializers.IntegerField(help_text="Codes in the current set (used or not).")
    generated_at = serializers.DateTimeField(allow_null=True)


class BackupCodesIssuedSerializer(BackupCodesStateSerializer):
    success = serializers.BooleanField()
    backup_codes = serializers.ListField(
        child=serializers.CharField(), help_text="The new codes (shown only now); all earlier codes stopped working."
    )
