"""OpenTelemetry end to end: a real daphne and a real Celery worker export OTLP/HTTP to a receiver
in this test, which decodes the protobuf. One trace runs from the API request through the worker
(the traceparent rides in the task); the execution's trace_id is that trace; model and tool calls
carry the GenAI attributes and the organization; prompt text only when asked for. Off by default."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx2 as httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from apps.runs.models import Execution
from tests.conftest import jwt_for
from tests.crews.conftest import wait_for
from tests.helpers import LiveServer, WorkerProcess, free_port, subprocess_env


class OtlpReceiver:
    """``POST /v1/traces`` (OTLP/HTTP protobuf): keeps every span as a dict."""

    def __init__(self):
        self.spans: list[dict] = []
        spans = self.spans

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
                    for scope_spans in resource_spans.scope_spans:
                        for span in scope_spans.spans:
                            spans.append(
                                {
                                    "name": span.name,
                                    "trace_id": span.trace_id.hex(),
                                    "span_id": span.span_id.hex(),
                                    "parent": span.parent_span_id.hex(),
                                    "service": resource.get("service.name"),
                                    "scope": scope_spans.scope.name,
                                    "attributes": {a.key: _value(a.value) for a in span.attributes},
                                }
                            )
                payload = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.server.shutdown()


def _value(value):
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def _run_traced(member, agent) -> tuple[OtlpReceiver, str]:
    receiver = OtlpReceiver()
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200"}
    server = worker = None
    try:
        server = LiveServer(**env)
        worker = WorkerProcess(env=subprocess_env(**env))
        worker.wait_alive()
        headers = {"Authorization": f"Bearer {jwt_for(member.user)['access_token']}"}
        response = httpx.post(
            f"{server.url}/api/v1/executions",
            headers=headers,
            timeout=20,
            json={"agent_id": str(agent.pk), "description": 'Work out 6*7.\n/tool calculator {"expression": "6*7"}'},
        )
        assert response.status_code == 202, response.text
        execution_id = response.json()["execution_id"]
        wait_for(lambda: Execution.objects.get(pk=execution_id).is_terminal, 40, message="the run to end")
        trace_id = Execution.objects.get(pk=execution_id).trace_id
        wait_for(lambda: any(s["name"].startswith("chat ") for s in receiver.spans), 20, message="the model span")
        time.sleep(0.5)  # the batch with the run's root span
        return receiver, trace_id
    finally:
        if worker:
            worker.stop()
        if server:
            server.stop()
        receiver.stop()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_one_trace_from_the_request_through_the_worker_with_genai_spans(make_member):
    from tests.crews.conftest import make_agent

    member = make_member()
    agent = make_agent(member, tools=["calculator"])
    receiver, trace_id = _run_traced(member, agent)
    spans = [s for s in receiver.spans if s["trace_id"] == trace_id]
    services = {s["service"] for s in spans}
    assert {"kai-web", "kai-worker"} <= services, services
    server_span = next(s for s in spans if s["service"] == "kai-web" and s["parent"] == "")
    assert server_span["attributes"].get("kai.organization_id") == str(member.organization.pk), server_span
    celery = [s for s in spans if s["scope"].startswith("opentelemetry.instrumentation.celery")]
    assert any(s["service"] == "kai-web" for s in celery) and any(s["service"] == "kai-worker" for s in celery)
    assert any(s["scope"].startswith("opentelemetry.instrumentation.psycopg") for s in spans)
    assert any(s["scope"].startswith("opentelemetry.instrumentation.redis") for s in receiver.spans)

    chat = [s for s in spans if s["name"].startswith("chat ")]
    assert chat, [s["name"] for s in spans]
    attributes = chat[0]["attributes"]
    assert attributes["gen_ai.system"] == "builtin" and attributes["gen_ai.request.model"]
    assert attributes["gen_ai.usage.input_tokens"] > 0 and attributes["gen_ai.usage.output_tokens"] > 0
    assert "kai.cost_usd" in attributes and attributes["kai.organization_id"] == str(member.organization.pk)
    assert "gen_ai.prompt" not in attributes and "gen_ai.completion" not in attributes
    by_id = {s["span_id"]: s for s in spans}
    root = next(s for s in spans if s["name"].startswith("run "))
    ancestors, span = [], chat[0]
    while span["parent"] in by_id:
        span = by_id[span["parent"]]
        ancestors.append(span["name"])
    assert root["name"] in ancestors and ancestors[-1] == server_span["name"], ancestors
    tools = [s for s in spans if s["name"] == "execute_tool calculator"]
    assert tools and tools[0]["attributes"]["gen_ai.tool.name"] == "calculator"


@pytest.mark.parametrize("capture", ["true", "false"])
def test_prompt_and_completion_text_only_when_asked_for(monkeypatch, capture):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from kai_platform import telemetry

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(telemetry, "_tracer", provider.get_tracer("test"))
    monkeypatch.setenv("KAI_OTEL_CAPTURE_CONTENT", capture)
    root = telemetry.start_run_span(
        name="run agent_task", trace_id="ab" * 16, organization_id="org-1", execution_id="run-1", kind="agent_task"
    )
    chat = telemetry.start_span(
        name="gpt-x",
        parent=root,
        kind="llm",
        organization_id="org-1",
        model="gpt-x",
        system="openai",
        content={"prompt": [{"role": "user", "content": "6*7?"}]},
    )
    telemetry.end_span(
        chat, status="ok", tokens_in=5, tokens_out=2, cost=0.001, model="gpt-x", content={"completion": "42"}
    )
    telemetry.end_span(root, status="ok")
    spans = {s.name: s for s in exporter.get_finished_spans()}
    attributes = dict(spans["chat gpt-x"].attributes)
    assert format(spans["chat gpt-x"].context.trace_id, "032x") == "ab" * 16  # the execution's trace id
    assert attributes["gen_ai.system"] == "openai" and attributes["gen_ai.usage.output_tokens"] == 2
    if capture == "true":
        assert "6*7?" in attributes["gen_ai.prompt"] and attributes["gen_ai.completion"] == "42"
    else:
        assert "gen_ai.prompt" not in attributes and "gen_ai.completion" not in attributes


def test_off_without_an_endpoint(monkeypatch):
    from kai_platform import telemetry

    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert telemetry.setup("kai-test") is False and not telemetry.enabled()
    assert (
        telemetry.current_trace_id() is None
        and telemetry.start_run_span(name="run", trace_id="0" * 32, organization_id=1, execution_id=1, kind="x") is None
    )
