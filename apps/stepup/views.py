"""Step-up routes: WebAuthn authenticator registration, assertions and password re-checks that
earn a grant, the grant's state. Every route acts for the requesting user and session."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import status
from rest_framework.response import Response

from apps.stepup import selectors, services
from apps.stepup.models import WebAuthnCredential
from apps.stepup.permissions import check_step_up, step_up_state
from apps.stepup.serializers import (
    AuthenticatorSerializer,
    BackupCodesIssuedSerializer,
    BackupCodesStateSerializer,
    GrantResponseSerializer,
    OptionsResponseSerializer,
    PasswordRequestSerializer,
    SetupRequestSerializer,
    SetupResponseSerializer,
    StepUpStateSerializer,
    VerifyRequestSerializer,
)
from kai_platform.api.serializers import validated
from kai_platform.api.views import KaiAPIView
from kai_platform.clientaddr import client_address
from kai_platform.tenancy.permissions import IsAuthenticated


class _StepUpView(KaiAPIView):
    permission_classes = [IsAuthenticated]

    @property
    def session_id(self) -> str:
        return self.auth_context.session_id


def _options(public_key: dict) -> dict:
    return {"public_key": public_key, "expires_in": services.CHALLENGE_TTL_SECONDS}


@extend_schema(tags=["auth"])
class BiometricSetupView(_StepUpView):
    """Register a WebAuthn authenticator (a user may have several). Two calls: without
    ``credential`` → the registration options for ``navigator.credentials.create()``; with the
    resulting ``credential`` → verified and stored (201); the first authenticator also gets ten
    single-use ``backup_codes`` (shown once; later registrations answer an empty list)."""

    @extend_schema(
        request=SetupRequestSerializer, responses={200: OptionsResponseSerializer, 201: SetupResponseSerializer}
    )
    def post(self, request):
        data = validated(SetupRequestSerializer, request)
        if not data.get("credential"):
            return Response(_options(services.registration_options(user=request.user, session_id=self.session_id)))
        stored, codes = services.registration_verify(
            user=request.user,
            session_id=self.session_id,
            organization=self.organization,
            credential=data["credential"],
            name=data.get("name", ""),
        )
        return Response(
            {"success": True, **AuthenticatorSerializer(stored).data, "backup_codes": codes},
            status=status.HTTP_201_CREATED,
        )


@extend_schema(tags=["auth"])
class BiometricVerifyView(_StepUpView):
    """Step up with an authenticator. Without ``credential`` → the authentication options for
    ``navigator.credentials.get()``; with the resulting assertion → a grant for this session.
    With ``backup_code`` instead → that code is spent and earns the same grant (``backup_code``)."""

    @extend_schema(request=VerifyRequestSerializer, responses={200: GrantResponseSerializer})
    def post(self, request):
        data = validated(VerifyRequestSerializer, request)
        if data.get("backup_code"):
            grant = services.backup_code_verify(
                user=request.user, session_id=self.session_id, organization=self.organization, code=data["backup_code"]
            )
            return Response({"success": True, "step_up": grant})
        if not data.get("credential"):
            return Response(_options(services.authentication_options(user=request.user, session_id=self.session_id)))
        grant = services.authentication_verify(
            user=request.user, session_id=self.session_id, organization=self.organization, credential=data["credential"]
        )
        return Response({"success": True, "step_up": grant})


@extend_schema(tags=["auth"])
class BiometricCredentialListView(_StepUpView):
    """The requesting user's registered authenticators."""

    @extend_schema(
        responses={200: inline_serializer("AuthenticatorList", {"items": AuthenticatorSerializer(many=True)})}
    )
    def get(self, request):
        rows = WebAuthnCredential.objects.filter(user=request.user).order_by("created_at")
        return Response({"items": AuthenticatorSerializer(rows, many=True).data})


@extend_schema(tags=["auth"])
class BiometricCredentialDetailView(_StepUpView):
    """Remove one of your authenticators (a sensitive operation when the organization requires step-up)."""

    @extend_schema(responses={204: None})
    def delete(self, request, pk):
        credential = get_object_or_404(WebAuthnCredential, pk=pk, user=request.user)
        check_step_up(request)
        services.authenticator_delete(credential=credential, actor=request.user, organization=self.organization)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=["auth"])
class BackupCodesView(_StepUpView):
    """GET: how many of your backup codes are left (never the codes). POST: replace them all by
    ten new ones — needs a fresh step-up grant of this session whatever the organization's setting."""

    @extend_schema(responses={200: BackupCodesStateSerializer})
    def get(self, request):
        return Response(selectors.backup_codes_state(user=request.user))

    @extend_schema(request=None, responses={200: BackupCodesIssuedSerializer})
    def post(self, request):
        check_step_up(request, always=True)
        codes = services.backup_codes_regenerate(user=request.user, organization=self.organization)
        return Response({"success": True, "backup_codes": codes, **selectors.backup_codes_state(user=request.user)})


@extend_schema(tags=["auth"])
class StepUpPasswordView(_StepUpView):
    """Step up by re-checking the account password (for users with no authenticator, unless the
    organization turned the fallback off)."""

    @extend_schema(request=PasswordRequestSerializer, responses={200: GrantResponseSerializer})
    def post(self, request):
        data = validated(PasswordRequestSerializer, request)
        grant = services.password_verify(
            user=request.user,
            session_id=self.session_id,
            organization=self.organization,
            password=data["password"],
            address=client_address(request),
        )
        return Response({"success": True, "step_up": grant})


@extend_schema(tags=["auth"])
class StepUpStateView(_StepUpView):
    """GET: does this organization require step-up, does this session hold a grant that counts.
    DELETE: drop this session's grant."""

    @extend_schema(responses={200: StepUpStateSerializer})
    def get(self, request):
        return Response(step_up_state(request))

    @extend_schema(responses={204: None})
    def delete(self, request):
        services.grant_revoke(user=request.user, session_id=self.session_id, organization=self.organization)
        return Response(status=status.HTTP_204_NO_CONTENT)
