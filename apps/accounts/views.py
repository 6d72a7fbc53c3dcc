"""Thin views over apps.accounts.services: auth flows, API keys, configuration."""

from __future__ import annotations

from django.db import transaction
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers as drf_serializers
from rest_framework import status
from rest_framework.response import Response

from apps.accounts import selectors, services
from apps.accounts.models import ApiKey, Membership, default_preferences
from apps.accounts.serializers import (
    ApiKeyCreatedSerializer,
    ApiKeySerializer,
    LoginResponseSerializer,
    LoginSerializer,
    LogoutSerializer,
    MagicLinkRequestSerializer,
    MeSerializer,
    OrganizationSerializer,
    PasswordChangedSerializer,
    PasswordChangeSerializer,
    PasswordResetConfirmSerializer,
    PasswordResetRequestSerializer,
    PreferencesSerializer,
    RefreshSerializer,
    RegisterResponseSerializer,
    RegisterSerializer,
    SessionSerializer,
    SettingsBodySerializer,
    SystemConfigSerializer,
    TokenPairSerializer,
    UserConfigSerializer,
    UserSerializer,
    VerifyMagicSerializer,
)
from kai_platform.api.serializers import validated
from kai_platform.api.views import KaiAPIView, PublicAPIView
from kai_platform.clientaddr import client_address
from kai_platform.ports import check_step_up
from kai_platform.tenancy import authcache
from kai_platform.tenancy.permissions import IsAuthenticated
from kai_platform.tenancy.roles import ADMIN_ROLES, ALL_ROLES
from kai_platform.tenancy.viewsets import NO_UPDATE, TenantScopedViewSet

DetailSerializer = inline_serializer("Detail", {"detail": drf_serializers.CharField()})


@extend_schema(tags=["auth"])
class RegisterView(PublicAPIView):
    @extend_schema(request=RegisterSerializer, responses={201: RegisterResponseSerializer})
    def post(self, request):
        data = validated(RegisterSerializer, request)
        user, organization = services.user_register(
            email=data["email"], password=data["password"], org_name=data["org_name"], full_name=data["full_name"]
        )
        body = {
            **services.auth_issue_tokens(user=user),
            "user": UserSerializer(user).data,
            "organization": OrganizationSerializer(organization).data,
        }
        return Response(body, status=status.HTTP_201_CREATED)


@extend_schema(tags=["auth"])
class LoginView(PublicAPIView):
    @extend_schema(request=LoginSerializer, responses={200: LoginResponseSerializer})
    def post(self, request):
        data = validated(LoginSerializer, request)
        user, tokens = services.auth_login(
            email=data["email"],
            password=data["password"],
            address=client_address(request),
            step_up_code=data.get("step_up_code"),
        )
        return Response({**tokens, "user": UserSerializer(user).data})


@extend_schema(tags=["auth"])
class RefreshView(PublicAPIView):
    @extend_schema(request=RefreshSerializer, responses={200: TokenPairSerializer})
    def post(self, request):
        data = validated(RefreshSerializer, request)
        return Response(services.auth_refresh(refresh_token=data["refresh_token"], address=client_address(request)))


@extend_schema(tags=["auth"])
class LogoutView(KaiAPIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(request=LogoutSerializer, responses={200: DetailSerializer})
    def post(self, request):
        data = validated(LogoutSerializer, request, require_token=False)
        claims = request.auth.claims if request.auth.kind == "jwt" else None
        services.auth_logout(user=request.user, access_claims=claims, refresh_token=data["refresh_token"])
        return Response({"detail": "Logged out."})


@extend_schema(tags=["auth"])
class MagicLinkView(PublicAPIView):
    @extend_schema(request=MagicLinkRequestSerializer, responses={202: DetailSerializer})
    def post(self, request):
        data = validated(MagicLinkRequestSerializer, request)
        services.magic_link_request(email=data["email"], address=client_address(request))
        return Response(
            {"detail": "If the address belongs to an account, a sign-in link has been sent."},
            status=status.HTTP_202_ACCEPTED,
        )


@extend_schema(tags=["auth"])
class VerifyMagicView(PublicAPIView):
    @extend_schema(request=VerifyMagicSerializer, responses={200: LoginResponseSerializer})
    def post(self, request):
        data = validated(VerifyMagicSerializer, request)
        user, tokens = services.magic_link_verify(token=data["token"], address=client_address(request))
        return Response({**tokens, "user": UserSerializer(user).data})

    @extend_schema(parameters=[VerifyMagicSerializer], responses={200: LoginResponseSerializer})
    def get(self, request):
        data = validated(VerifyMagicSerializer, request, data={"token": request.query_params.get("token", "")})
        user, tokens = services.magic_link_verify(token=data["token"], address=client_address(request))
        return Response({**tokens, "user": UserSerializer(user).data})


@extend_schema(tags=["auth"])
class PasswordChangeView(KaiAPIView):
    """Change the password (the current one is re-checked); the other sessions are signed out."""

    permission_classes = [IsAuthenticated]

    @extend_schema(request=PasswordChangeSerializer, responses={200: PasswordChangedSerializer})
    def post(self, request):
        data = validated(PasswordChangeSerializer, request)
        session_id = request.auth.session_id if request.auth.kind == "jwt" else None
        revoked = services.user_password_change(
            user=request.user,
            current_password=data["current_password"],
            new_password=data["new_password"],
            session_id=session_id,
            address=client_address(request),
        )
        return Response({"detail": "Password changed.", "sessions_revoked": revoked})


@extend_schema(tags=["auth"])
class PasswordResetView(PublicAPIView):
    @extend_schema(request=PasswordResetRequestSerializer, responses={202: DetailSerializer})
    def post(self, request):
        data = validated(PasswordResetRequestSerializer, request)
        services.user_password_reset_request(email=data["email"], address=client_address(request))
        return Response(
            {"detail": "If the address belongs to an account, a reset token has been sent."},
            status=status.HTTP_202_ACCEPTED,
        )


@extend_schema(tags=["auth"])
class PasswordResetConfirmView(PublicAPIView):
    @extend_schema(request=PasswordResetConfirmSerializer, responses={200: DetailSerializer})
    def post(self, request):
        data = validated(PasswordResetConfirmSerializer, request)
        services.user_password_reset_confirm(
            token=data["token"], new_password=data["new_password"], address=client_address(request)
        )
        return Response({"detail": "Password changed; every session was signed out."})


@extend_schema(tags=["auth"])
class SessionView(KaiAPIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: SessionSerializer})
    def get(self, request):
        ctx = request.auth
        return Response(
            {
                "user": UserSerializer(request.user).data,
                "organization": OrganizationSerializer(ctx.organization).data if ctx.organization else None,
                "role": ctx.role,
                "session_id": ctx.session_id,
                "expires_at": ctx.expires_at,
                "auth_type": ctx.kind,
            }
        )


@extend_schema(tags=["auth"])
class MeView(KaiAPIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: MeSerializer})
    def get(self, request):
        user = request.user
        data = UserSerializer(user).data
        data["memberships"] = [
            {"organization": OrganizationSerializer(m.organization).data, "role": m.role, "created_at": m.created_at}
            for m in authcache.memberships_of(user=user, handle=request.auth.cache, read=selectors.memberships_of)
        ]
        data["organization"] = (
            OrganizationSerializer(request.auth.organization).data if request.auth.organization else None
        )
        data["role"] = request.auth.role
        return Response(data)


@extend_schema(tags=["auth"])
class PreferencesView(KaiAPIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: PreferencesSerializer})
    def get(self, request):
        return Response({**default_preferences(), **(request.user.preferences or {})})

    @extend_schema(request=PreferencesSerializer, responses={200: PreferencesSerializer})
    def put(self, request):
        data = validated(PreferencesSerializer, request)
        return Response(services.preferences_update(user=request.user, changes=data))

    @extend_schema(request=PreferencesSerializer, responses={200: PreferencesSerializer})
    def patch(self, request):
        return self.put(request)


@extend_schema(tags=["auth"])
class ApiKeyViewSet(TenantScopedViewSet):
    """Platform API keys (``kai_…``): the clear key is in the create response only. DELETE revokes.
    Owners and admins see every key of the organization, other members their own."""

    model = ApiKey
    serializer_class = ApiKeySerializer
    http_method_names = NO_UPDATE
    filterset_fields = ["role"]
    list_as_rows = True  # B3's list: the page as plain rows, same JSON (kai_platform/tenancy/viewsets.py)
    list_row_properties = {"is_active": ("revoked_at", "expires_at")}

    def scope_queryset(self, queryset):
        if self.role not in ADMIN_ROLES:
            queryset = queryset.filter(created_by=self.request.user)
        return queryset

    @extend_schema(responses={201: ApiKeyCreatedSerializer})
    def create(self, request, *args, **kwargs):
        data = validated(ApiKeySerializer, request)
        api_key, raw = services.api_key_create(
            organization=self.organization,
            created_by=request.user,
            creator_role=self.role,
            name=data["name"],
            role=data.get("role"),
            expires_at=data.get("expires_at"),
        )
        body = ApiKeySerializer(api_key).data
        body["key"] = raw
        return Response(body, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        services.api_key_revoke(api_key=instance, actor=self.request.user)


@extend_schema(tags=["config"])
class SystemConfigView(KaiAPIView):
    """The organization's system configuration: every member reads it, owners/admins change it."""

    action_roles = {"get": ALL_ROLES, "post": ADMIN_ROLES, "put": ADMIN_ROLES}

    def _body(self, organization):
        return {
            "organization_id": organization.pk,
            "settings": organization.settings,
            "updated_at": organization.updated_at,
        }

    @extend_schema(responses={200: SystemConfigSerializer})
    def get(self, request):
        return Response(self._body(self.organization))

    @extend_schema(request=SettingsBodySerializer, responses={200: SystemConfigSerializer})
    def post(self, request):
        check_step_up(request)  # a system modification: once required, turning step-up off needs it too
        data = validated(SettingsBodySerializer, request)
        services.organization_settings_update(
            organization=self.organization, actor=request.user, changes=data["settings"]
        )
        self.organization.refresh_from_db(fields=["settings", "updated_at"])
        return Response(self._body(self.organization))


@extend_schema(tags=["config"])
class UserConfigView(KaiAPIView):
    """The requesting member's own configuration within the organization."""

    def _membership(self, request) -> Membership:
        membership = request.auth.membership
        if membership is None:  # API keys act for their creator
            membership = Membership.objects.get(organization=self.organization, user=request.user)
        return membership

    @extend_schema(responses={200: UserConfigSerializer})
    def get(self, request):
        membership = self._membership(request)
        return Response(
            {
                "organization_id": membership.organization_id,
                "user_id": membership.user_id,
                "settings": membership.settings,
            }
        )

    @extend_schema(request=SettingsBodySerializer, responses={200: UserConfigSerializer})
    def post(self, request):
        data = validated(SettingsBodySerializer, request)
        with transaction.atomic():
            settings = services.membership_settings_update(
                membership=self._membership(request), actor=request.user, changes=data["settings"]
            )
        return Response({"organization_id": self.organization.pk, "user_id": request.user.pk, "settings": settings})
