from rest_framework import serializers

from apps.accounts.models import ApiKey, Membership, Organization, User
from kai_platform.api.schema import requires_one_of
from kai_platform.api.serializers import JSONObjectField, KaiModelSerializer, KaiSerializer
from kai_platform.tenancy.roles import Role


class OrganizationSerializer(KaiModelSerializer):
    class Meta:
        model = Organization
        fields = ["id", "slug", "name", "plan", "created_at"]
        read_only_fields = fields


class UserSerializer(KaiModelSerializer):
    created_at = serializers.DateTimeField(source="date_joined", read_only=True)

    class Meta:
        model = User
        fields = ["id", "email", "full_name", "is_staff", "created_at", "updated_at", "preferences"]
        read_only_fields = fields


class MembershipSerializer(KaiModelSerializer):
    organization = OrganizationSerializer(read_only=True)

    class Meta:
        model = Membership
        fields = ["organization", "role", "created_at"]
        read_only_fields = fields


class MeSerializer(UserSerializer):
    memberships = MembershipSerializer(many=True, read_only=True)
    organization = OrganizationSerializer(read_only=True, allow_null=True)
    role = serializers.CharField(read_only=True, allow_null=True)

    class Meta(UserSerializer.Meta):
        fields = UserSerializer.Meta.fields + ["memberships", "organization", "role"]
        read_only_fields = fields


class TokenPairSerializer(serializers.Serializer):
    access_token = serializers.CharField()
    refresh_token = serializers.CharField()
    expires_in = serializers.IntegerField(help_text="Seconds until the access token expires.")
    token_type = serializers.CharField(default="Bearer")
    user_id = serializers.UUIDField()


class LoginResponseSerializer(TokenPairSerializer):
    user = UserSerializer()


class RegisterResponseSerializer(LoginResponseSerializer):
    organization = OrganizationSerializer()


class RegisterSerializer(KaiSerializer):
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(write_only=True, max_length=128, style={"input_type": "password"})
    org_name = serializers.CharField(max_length=200, required=False, help_text="Name of the new organization.")
    organization_name = serializers.CharField(max_length=200, required=False, help_text="Alias of org_name.")
    full_name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")

    def validate(self, attrs):
        name = (attrs.pop("org_name", None) or attrs.pop("organization_name", None) or "").strip()
        attrs.pop("organization_name", None)
        attrs["org_name"] = name or f"{attrs['email'].split('@')[0]}'s organization"
        return attrs


class LoginSerializer(KaiSerializer):
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(write_only=True, max_length=128, style={"input_type": "password"})
    step_up_code = serializers.CharField(
        required=False,
        max_length=64,
        write_only=True,
        help_text="A step-up backup code: an owner's break-glass sign-in into an organization that enforces SSO.",
    )


@requires_one_of("refresh_token", "refresh")
class RefreshSerializer(KaiSerializer):
    refresh_token = serializers.CharField(required=False, max_length=2048)
    refresh = serializers.CharField(required=False, max_length=2048, help_text="Alias of refresh_token.")

    def validate(self, attrs):
        token = attrs.get("refresh_token") or attrs.get("refresh")
        if not token and self.context.get("require_token", True):
            raise serializers.ValidationError({"refresh_token": ["This field is required."]})
        return {"refresh_token": token}


class LogoutSerializer(RefreshSerializer):
    """``auth/logout``: the refresh token to revoke too, when the client has one."""

    schema_requires_one_of = ()


class MagicLinkRequestSerializer(KaiSerializer):
    email = serializers.EmailField(max_length=254)


class VerifyMagicSerializer(KaiSerializer):
    token = serializers.CharField(max_length=256)


class PasswordChangeSerializer(KaiSerializer):
    current_password = serializers.CharField(write_only=True, max_length=128, trim_whitespace=False)
    new_password = serializers.CharField(write_only=True, max_length=128, trim_whitespace=False)


class PasswordChangedSerializer(serializers.Serializer):
    detail = serializers.CharField()
    sessions_revoked = serializers.IntegerField(help_text="Other sessions whose refresh tokens were revoked.")


class PasswordResetRequestSerializer(KaiSerializer):
    email = serializers.EmailField(max_length=254)


class PasswordResetConfirmSerializer(KaiSerializer):
    token = serializers.CharField(max_length=256)
    new_password = serializers.CharField(write_only=True, max_length=128, trim_whitespace=False)


class SessionSerializer(serializers.Serializer):
    user = UserSerializer()
    organization = OrganizationSerializer(allow_null=True)
    role = serializers.CharField(allow_null=True)
    session_id = serializers.CharField()
    expires_at = serializers.DateTimeField(allow_null=True)
    auth_type = serializers.ChoiceField(choices=["jwt", "api_key"])


class NotificationSettingsSerializer(KaiSerializer):
    email = serializers.BooleanField(required=False)
    push = serializers.BooleanField(required=False)
    in_app = serializers.BooleanField(required=False)


class PreferencesSerializer(KaiSerializer):
    """Seed 002 ``UserPreferences``."""

    voice_enabled = serializers.BooleanField(required=False)
    default_voice_language = serializers.RegexField(
        r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$", max_length=35, required=False
    )
    biometric_enabled = serializers.BooleanField(required=False)
    theme = serializers.ChoiceField(choices=["light", "dark", "system"], required=False)
    notification_settings = NotificationSettingsSerializer(required=False)


class ApiKeySerializer(KaiModelSerializer):
    role = serializers.ChoiceField(
        choices=Role.choices, required=False, help_text="At most the creator's role; defaults to it."
    )
    is_active = serializers.BooleanField(read_only=True)
    created_by = serializers.UUIDField(source="created_by_id", read_only=True)

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "prefix",
            "role",
            "expires_at",
            "revoked_at",
            "last_used_at",
            "is_active",
            "created_by",
            "created_at",
        ]
        read_only_fields = ["id", "prefix", "revoked_at", "last_used_at", "is_active", "created_by", "created_at"]


class ApiKeyCreatedSerializer(ApiKeySerializer):
    key = serializers.CharField(read_only=True, help_text="The key in clear text. Shown once; store it now.")

    class Meta(ApiKeySerializer.Meta):
        fields = ApiKeySerializer.Meta.fields + ["key"]
        read_only_fields = ApiKeySerializer.Meta.read_only_fields + ["key"]


class SettingsBodySerializer(KaiSerializer):
    settings = JSONObjectField(max_bytes=65536, help_text="Keys to set; a null value removes the key.")


class SystemConfigSerializer(serializers.Serializer):
    organization_id = serializers.UUIDField()
    settings = serializers.JSONField()
    updated_at = serializers.DateTimeField()


class UserConfigSerializer(serializers.Serializer):
    organization_id = serializers.UUIDField()
    user_id = serializers.UUIDField()
    settings = serializers.JSONField()
