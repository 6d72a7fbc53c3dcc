"""Base API views and the health endpoints."""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpResponse
from django_redis import get_redis_connection
from drf_spectacular.utils import extend_schema, inline_serializer
from drf_spectacular.views import SpectacularJSONAPIView
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from rest_framework import exceptions, serializers
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from kai_platform.api.exceptions import envelope
from kai_platform.api.metrics import REGISTRY
from kai_platform.celery import app, worker_key_pattern
from kai_platform.tenancy.viewsets import OrganizationContextMixin


class KaiAPIView(OrganizationContextMixin, APIView):
    """Base of every non-viewset API view."""


class PublicAPIView(KaiAPIView):
    """No credential needed (and none looked at): login, register, refresh, magic links."""

    authentication_classes: list[type[BaseAuthentication]] = []
    permission_classes = [AllowAny]

    def get_authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'  # failed sign-ins answer 401, not 403


class HealthView(PublicAPIView):
    """Liveness: the process answers. No dependencies checked."""

    throttle_classes: list[type[BaseThrottle]] = []

    @extend_schema(exclude=True)
    def get(self, request: Request) -> Response:
        return Response({"status": "ok"})


def _timed(check: Callable[[], str | None]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        detail = check()
        ok = True
    except Exception as exc:  # any failure means "down", with the reason
        detail = f"{type(exc).__name__}: {exc}"[:300]
        ok = False
    result: dict[str, Any] = {
        "status": "up" if ok else "down",
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
    }
    if detail:
        result["detail" if not ok else "info"] = detail
    return result


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_redis() -> None:
    get_redis_connection("default").ping()


def _check_broker() -> None:
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


def _check_workers() -> str:
    prefix = worker_key_pattern()[:-1]
    names = [
        key.decode()[len(prefix) :]
        for key in get_redis_connection("default").scan_iter(worker_key_pattern(), count=1000)
    ]
    if not names:
        raise RuntimeError("no live Celery worker has sent a heartbeat in the last 15 s")
    return f"{len(names)} live: {', '.join(sorted(names)[:10])}"


READINESS_CHECKS = {
    "database": _check_database,
    "redis": _check_redis,
    "broker": _check_broker,
    "workers": _check_workers,
}


class MetricsView(PublicAPIView):
    """Prometheus text exposition. With ``KAI_METRICS_TOKEN`` set, scrapers send it as a bearer
    token; production refuses to serve metrics without one."""

    throttle_classes: list[type[BaseThrottle]] = []

    @extend_schema(exclude=True)
    def get(self, request: Request) -> HttpResponse:
        expected = settings.KAI_METRICS_TOKEN
        if expected:
            given = request.META.get("HTTP_AUTHORIZATION", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), expected.encode()):
                raise exceptions.AuthenticationFailed("A valid metrics token is required.")
        elif settings.PRODUCTION:
            raise exceptions.PermissionDenied("Set KAI_METRICS_TOKEN to expose metrics in production.")
        return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)


class SystemHealthView(KaiAPIView):
    """Readiness: database, Redis, broker and at least one live worker, with latencies.
    503 ``GENERAL_004`` naming what is down."""

    @extend_schema(
        responses={
            200: inline_serializer(
                "SystemHealth",
                {
                    "status": serializers.ChoiceField(choices=["healthy", "unhealthy"]),
                    "checks": serializers.DictField(child=serializers.DictField()),
                },
            ),
        },
    )
    def get(self, request: Request) -> Response:
        checks = {name: _timed(check) for name, check in READINESS_CHECKS.items()}
        down = [name for name, result in checks.items() if result["status"] != "up"]
        if not down:
            return Response({"status": "healthy", "checks": checks})
        body = envelope(
            status=503,
            detail=f"Unhealthy: {', '.join(down)} down.",
            errors=[{"field": name, "message": checks[name].get("detail", "down")} for name in down],
            extra={"status": "unhealthy", "checks": checks},
        )
        return Response(body, status=503)


class OpenApiDocumentView(SpectacularJSONAPIView):
    """``/api-openapi.json``, built once per process under a lock: drf-spectacular's generation shares
    state between threads (concurrent first requests answered 500), and the document is the same for
    every caller (``SERVE_PUBLIC``)."""

    _lock = threading.Lock()
    _documents: dict[tuple[str | None, str | None], Any] = {}

    def _get_schema_response(self, request: Request) -> Response:
        version = self.api_version or request.version or self._get_version_parameter(request)  # type: ignore[no-untyped-call]  # drf-spectacular's own method, untyped
        key = (version, request.GET.get("lang"))
        with self._lock:
            if key not in self._documents:
                self._documents[key] = super()._get_schema_response(request).data  # type: ignore[no-untyped-call]  # drf-spectacular's own method, untyped
        filename = self._get_filename(request, version)  # type: ignore[no-untyped-call]  # drf-spectacular's own method, untyped
        return Response(data=self._documents[key], headers={"Content-Disposition": f'inline; filename="{filename}"'})
