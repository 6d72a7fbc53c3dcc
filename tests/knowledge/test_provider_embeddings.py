"""Provider embeddings: a knowledge base whose model is served by an OpenAI-compatible provider
is embedded through its ``/embeddings`` endpoint (a local server here), asked for 384 dimensions,
in batches; a model answering another length fails the document with a clear error."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from apps.agents.services import provider_create
from apps.knowledge import services
from apps.knowledge.ingest import document_ingest
from apps.knowledge.models import Chunk, Document, KnowledgeBase
from kai_platform.llm.embeddings import builtin_embedding

pytestmark = pytest.mark.django_db


class EmbeddingServer:
    """Answers ``POST /v1/embeddings`` with the builtin embedder's vectors (so rankings are
    predictable), of ``dimensions`` length unless ``force_dimensions`` says otherwise."""

    def __init__(self):
        self.requests: list[dict] = []
        self.force_dimensions: int | None = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                outer.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                size = outer.force_dimensions or body.get("dimensions") or 1536
                inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
                data = [
                    {"object": "embedding", "index": i, "embedding": builtin_embedding(text, size)}
                    for i, text in enumerate(inputs)
                ]
                raw = json.dumps(
                    {
                        "object": "list",
                        "data": data,
                        "model": body["model"],
                        "usage": {"prompt_tokens": 1, "total_tokens": 1},
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(settings):
    settings.KAI_NETWORK_ALLOWLIST = ["127.0.0.1"]
    server = EmbeddingServer()
    yield server
    server.close()


def test_documents_and_queries_are_embedded_by_the_provider(server, member, owner_client):
    provider_create(
        organization=member.organization,
        actor=member.user,
        data={
            "name": "local",
            "provider_type": "openai_compatible",
            "base_url": server.url,
            "default_model": "embed-small",
            "api_key": "sk-test-123456",
        },
    )
    kb = owner_client.post(
        "/api/v1/knowledge-bases",
        {"name": "P", "embedding_model": "embed-small", "chunk_size": 20, "chunk_overlap": 2},
        format="json",
    ).json()
    assert kb["embedding_model"] == "embed-small", kb
    text = " ".join(f"Paragraph {i} talks about lighthouse number {i}." for i in range(140))
    doc = services.document_create_text(
        knowledge_base=KnowledgeBase.objects.get(pk=kb["id"]), actor=member.user, name="many.txt", text=text
    )
    assert document_ingest(document_id=doc.pk, version=doc.version) == "ready"
    chunks = Chunk.objects.filter(document=doc).count()
    batches = [r for r in server.requests if r["path"] == "/v1/embeddings"]
    assert chunks > 64 and len(batches) == -(-chunks // 64)  # batches of 64
    assert all(r["body"]["dimensions"] == 384 and r["body"]["model"] == "embed-small" for r in batches)
    assert batches[0]["auth"] == "Bearer sk-test-123456"
    hits = owner_client.post(
        f"/api/v1/knowledge-bases/{kb['id']}/search",
        {"query": "lighthouse number 42", "mode": "vector", "top_k": 3},
        format="json",
    ).json()
    assert "lighthouse number 42" in hits["items"][0]["text"]
    assert server.requests[-1]["body"]["input"] == ["lighthouse number 42"]  # the query too

    server.force_dimensions = 768
    services.document_reingest(document=doc, actor=member.user)
    doc.refresh_from_db()
    assert document_ingest(document_id=doc.pk, version=doc.version) == "failed"
    failed = Document.objects.get(pk=doc.pk)
    assert "768-dimensional" in failed.error and "384" in failed.error
    assert not Chunk.objects.filter(document=doc).exists()


def test_a_model_no_provider_serves_is_refused(owner_client):
    response = owner_client.post(
        "/api/v1/knowledge-bases", {"name": "X", "embedding_model": "claude-embed"}, format="json"
    )
    assert response.status_code == 400 and "embedding_model" in json.dumps(response.json())
