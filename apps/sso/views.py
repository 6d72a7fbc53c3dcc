"""Thin views: SSO connections (owner), SCIM tokens (owner), SSO sign-in start and code exchange."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.accounts.serializers import OrganizationSerializer, RegisterResponseSerializer, UserSerializer
from apps.sso import scim, selectors, services, signin
from apps.sso.models import ScimToken, SSOConnection
from apps.sso.serializers import ExchangeSerializer, ScimTokenSerializer, SSOConnectionSerializer
from kai_platform.api.serializers import validated
from kai_platform.api.views import PublicAPIView
from kai_platform.tenancy.roles import Role
from kai_platform.tenancy.viewsets import NO_UPDATE, TenantScopedViewSet

OWNER_ONLY = {"*": frozenset({Role.OWNER})}


@extend_schema(tags=["sso"])
class SSOConnectionViewSet(TenantScopedViewSet):
    """The organization's identity provider (OIDC or SAML 2.0). Owners only; the client secret is
    write-only. ``{id}/verify-domains`` checks the DNS TXT records of the allowed domains."""

    model = SSOConnection
    serializer_class = SSOConnectionSerializer
    action_roles = OWNER_ONLY

    def scope_queryset(self, queryset):
        return queryset.select_related("organization")

    def create(self, request, *args, **kwargs):
        data = validated(SSOConnectionSerializer, request)
        connection = services.connection_create(organization=self.organization, actor=request.user, data=data)
        return Response(SSOConnectionSerializer(connection).data, status=status.HTTP_201_CREATED)

    def update(self, request, *args, **kwargs):
        connection = self.get_object()
        serializer = self.get_serializer(connection, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        data.pop("protocol", None) if data.get("protocol") == connection.protocol else None
        connection = services.connection_update(connection=connection, actor=request.user, data=data)
        return Response(SSOConnectionSerializer(connection).data)

    def perform_destroy(self, instance):
        services.connection_delete(connection=instance, actor=self.request.user)

    @extend_schema(request=None, responses={200: SSOConnectionSerializer})
    @action(detail=True, methods=["post"], url_path="verify-domains")
    def verify_domains(self, request, pk=None):
        connection = services.connection_verify_domains(
            connection=self.get_object(), actor=request.user, resolver=selectors.dns_resolver()
        )
        return Response(SSOConnectionSerializer(connection).data)


@extend_schema(tags=["sso"])
class ScimTokenViewSet(TenantScopedViewSet):
    """Bearer tokens for the organization's SCIM 2.0 endpoint (``/scim/v2``); the token is in the
    create response only. DELETE revokes."""

    model = ScimToken
    serializer_class = ScimTokenSerializer
    http_method_names = NO_UPDATE
    action_roles = OWNER_ONLY

    def create(self, request, *args, **kwargs):
        data = validated(ScimTokenSerializer, request)
        token, raw = scim.token_create(organization=self.organization, actor=request.user, name=data["name"])
        return Response({**ScimTokenSerializer(token).data, "token": raw}, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        scim.token_revoke(token=instance, actor=self.request.user)


@extend_schema(tags=["auth"])
class SSOLoginView(PublicAPIView):
    """Start a sign-in through the organization's identity provider (302 to the IdP).
    ``mode=api`` (default) ends with a one-time code; ``mode=console`` with an admin session."""

    @extend_schema(
        parameters=[
            OpenApiParameter("mode", str, enum=list(signin.MODES)),
            OpenApiParameter("redirect_uri", str),
            OpenApiParameter("next", str),
        ],
        responses={302: None},
    )
    def get(self, request, org_slug):
        connection = selectors.active_connection_for_slug(slug=org_slug)
        if connection is None:
            return signin.error_response(404, "This organization has no active single sign-on connection.")
        mode = request.query_params.get("mode", "api")
        redirect_uri = request.query_params.get("redirect_uri", "")
        if mode not in signin.MODES:
            return signin.error_response(400, f"mode must be one of: {', '.join(signin.MODES)}.")
        if redirect_uri and not signin.redirect_uri_allowed(connection, redirect_uri):
            return signin.error_response(400, "redirect_uri is not registered on this SSO connection.")
        return signin.login_start(
            request._request,
            connection=connection,
            mode=mode,
            redirect_uri=redirect_uri,
            next_url=request.query_params.get("next", ""),
        )


@extend_schema(tags=["auth"])
class SSOExchangeView(PublicAPIView):
    """The token pair (as ``auth/login`` answers it) for a one-time SSO code."""

    @extend_schema(request=ExchangeSerializer, responses={200: RegisterResponseSerializer})
    def post(self, request):
        data = validated(ExchangeSerializer, request)
        user, organization, tokens = signin.code_exchange(code=data["code"])
        return Response(
            {**tokens, "user": UserSerializer(user).data, "organization": OrganizationSerializer(organization).data}
        )
