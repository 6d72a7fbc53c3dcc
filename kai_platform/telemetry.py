"""OpenTelemetry traces, off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set: the SDK with the OTLP/HTTP exporter, and the
instrumentation packages for Django (HTTP requests), Celery (tasks; the W3C ``traceparent`` rides
in the task message), psycopg and Redis. The run engine adds one span per run, agent, model and
tool call with the GenAI semantic conventions; an execution's ``trace_id`` is its trace's id.

Prompt and completion text are exported only with ``KAI_OTEL_CAPTURE_CONTENT=true``. The other
``OTEL_*`` variables (service name, resource attributes, headers, sampler) work as the SDK
documents them.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
from contextvars import Token
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse
    from opentelemetry.context import Context
    from opentelemetry.trace import Span

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_provider: Any = None
_tracer: Any = None  # opentelemetry Tracer once setup() ran


def configured() -> bool:
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def enabled() -> bool:
    return _tracer is not None


def capture_content() -> bool:
    return enabled() and os.environ.get("KAI_OTEL_CAPTURE_CONTENT", "").lower() in {"1", "true", "yes"}


def setup(service: str) -> bool:
    """Install the tracer provider and the instrumentations in this process (once). False when
    tracing is not configured."""
    global _provider, _tracer
    if not configured():
        return False
    with _lock:
        if _provider is not None:
            return True
        # deferred: heavy — OpenTelemetry loads when tracing is used
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        attributes = {"service.namespace": "kai", "kai.process": service}
        if not os.environ.get("OTEL_SERVICE_NAME"):
            attributes["service.name"] = service
        provider = TracerProvider(resource=Resource.create(attributes))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
        _instrument()
        _provider, _tracer = provider, trace.get_tracer("kai_platform")
    logger.info("OpenTelemetry traces on (%s)", service)
    return True


def _instrument() -> None:
    # deferred: heavy — OpenTelemetry loads when tracing is used
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    DjangoInstrumentor().instrument(response_hook=_tag_request_organization)
    CeleryInstrumentor().instrument()
    PsycopgInstrumentor().instrument(enable_commenter=False, skip_dep_check=True)
    RedisInstrumentor().instrument()


def _tag_request_organization(span: Span, request: HttpRequest, response: HttpResponse) -> None:
    """The request's organization (DRF copies the credential's context to ``request.auth``)."""
    organization = getattr(getattr(request, "auth", None), "organization", None)
    if organization is not None and span.is_recording():
        span.set_attribute("kai.organization_id", str(organization.pk))


def flush(timeout_ms: int = 5000) -> None:
    if _provider is not None:
        _provider.force_flush(timeout_ms)


def current_trace_id() -> str | None:
    """The active span's trace id (32 hex), if tracing is on and a span is active."""
    if not enabled():
        return None
    # deferred: heavy — OpenTelemetry loads when tracing is used
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


# --- the run engine's spans ----------------------------------------------------------------------


def start_run_span(
    *, name: str, trace_id: str, organization_id: object, execution_id: object, kind: str
) -> Span | None:
    """The root span of a run, in the execution's trace: a child of the current (Celery task)
    span when that is the same trace, else under the execution's trace id with a link to it."""
    if not enabled():
        return None
    # deferred: heavy — OpenTelemetry loads when tracing is used
    from opentelemetry import trace
    from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, TraceFlags

    current = trace.get_current_span().get_span_context()
    attributes = {
        "kai.organization_id": str(organization_id),
        "kai.execution_id": str(execution_id),
        "kai.execution_kind": str(kind),
    }
    try:
        wanted = int(trace_id, 16)
    except (TypeError, ValueError):
        wanted = 0
    if not wanted or (current.is_valid and current.trace_id == wanted):
        root: Span = _tracer.start_span(name, attributes=attributes)
        return root
    parent = SpanContext(
        trace_id=wanted, span_id=random.getrandbits(64) or 1, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
    )
    links = [Link(current)] if current.is_valid else []
    linked: Span = _tracer.start_span(
        name, context=trace.set_span_in_context(NonRecordingSpan(parent)), attributes=attributes, links=links
    )
    return linked


def activate(otel_span: Span | None) -> Token[Context] | None:
    """Make ``otel_span`` the current span of this thread; returns what ``deactivate`` takes."""
    if otel_span is None:
        return None
    # deferred: heavy — OpenTelemetry loads when tracing is used
    from opentelemetry import context, trace

    return context.attach(trace.set_span_in_context(otel_span))


def deactivate(token: Token[Context] | None) -> None:
    if token is not None:
        # deferred: heavy — OpenTelemetry loads when tracing is used
        from opentelemetry import context

        context.detach(token)


def start_span(
    *,
    name: str,
    parent: Span | None,
    kind: str,
    organization_id: object,
    model: str = "",
    system: str = "",
    content: dict[str, Any] | None = None,
) -> Span | None:
    """A span of an agent, task, model (``gen_ai.*``) or tool call under ``parent`` (an OTel span)."""
    if not enabled() or parent is None:
        return None
    # deferred: heavy — OpenTelemetry loads when tracing is used
    from opentelemetry import trace

    attributes = {"kai.organization_id": str(organization_id), "kai.span_kind": kind}
    if kind == "llm":
        attributes.update(
            {"gen_ai.operation.name": "chat", "gen_ai.system": system or "unknown", "gen_ai.request.model": model}
        )
        name = f"chat {model}"
    elif kind == "tool":
        attributes.update({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name})
        name = f"execute_tool {name}"
    if content and capture_content() and "prompt" in content:
        attributes["gen_ai.prompt"] = _text(content["prompt"])
    span: Span = _tracer.start_span(name, context=trace.set_span_in_context(parent), attributes=attributes)
    return span


def end_span(
    otel_span: Span | None,
    *,
    status: str,
    tokens_in: int = 0,
    tokens_out: int = 0,
    cost: float | Decimal | None = None,
    model: str = "",
    error: str = "",
    content: dict[str, Any] | None = None,
) -> None:
    if otel_span is None:
        return
    # deferred: heavy — OpenTelemetry loads when tracing is used
    from opentelemetry.trace import Status, StatusCode

    if tokens_in or tokens_out:
        otel_span.set_attribute("gen_ai.usage.input_tokens", int(tokens_in))
        otel_span.set_attribute("gen_ai.usage.output_tokens", int(tokens_out))
    if model:
        otel_span.set_attribute("gen_ai.response.model", model)
    if cost is not None:
        otel_span.set_attribute("kai.cost_usd", float(cost))
    if content and capture_content() and "completion" in content:
        otel_span.set_attribute("gen_ai.completion", _text(content["completion"]))
    otel_span.set_attribute("kai.status", status)
    if status == "error":
        otel_span.set_status(Status(StatusCode.ERROR, error[:500] or None))
    otel_span.end()


def _text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)[:32000]
