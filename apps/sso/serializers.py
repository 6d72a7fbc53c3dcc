"""Serializers of the SSO app. The client secret is write-only; the response shows whether one is set."""

from __future__ import annotations

from rest_framework import serializers

from apps.sso.models import ScimToken, SSOConnection
from apps.sso.services import TXT_LABEL, TXT_PREFIX
from kai_platform.api.schema import GIVEN, schema_rules
from kai_platform.api.serializers import KaiModelSerializer, KaiSerializer
from kai_platform.tenancy.roles import Role

#: roles an identity provider's claims may grant (owners are managed in the platform)
MAPPABLE_ROLES = [r.value for r in Role if r != Role.OWNER]


#: services._validate's rules, for a new connection: what each protocol needs; an enforced connection names its domains
SSO_RULES = (
    {
        "anyOf": [
            {
                "required": ["issuer_url", "client_id", "client_secret"],
                "properties": {
                    "protocol": {"enum": ["oidc"]},
                    "issuer_url": GIVEN,
                    "client_id": GIVEN,
                    "client_secret": GIVEN,
                },
            },
            {
                "properties": {"protocol": {"enum": ["saml"]}},
                "anyOf": [
                    {"required": ["idp_metadata_xml"], "properties": {"idp_metadata_xml": GIVEN}},
                    {"required": ["idp_metadata_url"], "properties": {"idp_metadata_url": GIVEN}},
                    {
                        "required": ["idp_entity_id", "idp_sso_url", "idp_x509cert"],
                        "properties": {"idp_entity_id": GIVEN, "idp_sso_url": GIVEN, "idp_x509cert": GIVEN},
                    },
                ],
            },
        ]
    },
    {
        "anyOf": [
            {"properties": {"enforced": {"enum": [False]}}},
            {"required": ["allowed_domains"], "properties": {"allowed_domains": {"minItems": 1}}},
        ]
    },
)
#: validate_allowed_domains: a domain has a dot (after any leading @) and no space
DOMAIN_PATTERN = r"^\s*@*[^ ]*\.[^ ]*?\s*$"


@schema_rules(*SSO_RULES)
class SSOConnectionSerializer(KaiModelSerializer):
    client_secret = serializers.CharField(write_only=True, required=False, allow_blank=True, max_length=2000)
    client_secret_set = serializers.SerializerMethodField()
    allowed_domains = serializers.ListField(
        child=serializers.RegexField(DOMAIN_PATTERN, max_length=253), required=False
    )
    redirect_uris = serializers.ListField(child=serializers.URLField(max_length=500), required=False)
    scopes = serializers.ListField(child=serializers.CharField(max_length=100), required=False)
    role_mapping = serializers.DictField(child=serializers.ChoiceField(choices=MAPPABLE_ROLES), required=False)
    default_role = serializers.ChoiceField(choices=MAPPABLE_ROLES, required=False)
    domains_verified = serializers.BooleanField(read_only=True)
    dns_txt_record = serializers.SerializerMethodField()
    login_url = serializers.SerializerMethodField()

    class Meta:
        model = SSOConnection
        fields = [
            "id",
            "protocol",
            "name",
            "issuer_url",
            "client_id",
            "client_secret",
            "client_secret_set",
            "scopes",
            "idp_metadata_xml",
            "idp_metadata_url",
            "idp_entity_id",
            "idp_sso_url",
            "idp_x509cert",
            "allowed_domains",
            "verified_domains",
            "domains_confirmed_by_staff",
            "domains_verified",
            "dns_txt_record",
            "default_role",
            "role_claim",
            "role_mapping",
            "redirect_uris",
            "enforced",
            "is_active",
            "login_url",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "verified_domains", "domains_confirmed_by_staff", "created_at", "updated_at"]

    def get_client_secret_set(self, obj) -> bool:
        return bool(obj.client_secret_encrypted)

    def get_dns_txt_record(self, obj) -> dict:
        return {"name": f"{TXT_LABEL}.<domain>", "type": "TXT", "value": f"{TXT_PREFIX}{obj.domain_verification_token}"}

    def get_login_url(self, obj) -> str:
        return f"/api/v1/auth/sso/{obj.organization.slug}/login"

    def validate_allowed_domains(self, value):
        for domain in value:
            if "." not in domain.strip().lstrip("@") or " " in domain.strip():
                raise serializers.ValidationError(f"'{domain}' is not a domain name.")
        return value


class ScimTokenSerializer(KaiModelSerializer):
    class Meta:
        model = ScimToken
        fields = ["id", "name", "prefix", "revoked_at", "last_used_at", "created_at"]
        read_only_fields = ["id", "prefix", "revoked_at", "last_used_at", "created_at"]


class ExchangeSerializer(KaiSerializer):
    code = serializers.CharField(max_length=200)
