"""B15 (knowledge): hybrid search p50 over N chunks (builtin 384-d embeddings, 100,000 by default)
through ``apps.knowledge.search.search`` — what ``knowledge-bases/{id}/search`` and the agent tool
call: embed the query, build the statement, run it — beside the same statement run raw on a
psycopg connection with the query vector computed beforehand.

    DATABASE_URL=… REDIS_URL=… .venv/bin/python bench/b15_knowledge_search.py [--chunks 100000] [--queries 60]

Chunks are synthetic (60 words each from a 6,000-word Zipf-weighted vocabulary, 1,000 per
document), inserted in batches with their tsvector, the HNSW index built after the load. Targets:
p50 ≤ 50 ms and ≤ 1.5× the raw statement.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kai_platform.settings")

DEFAULTS = {"chunks": 100_000, "queries": 60}
MEASURES = "hybrid search p50 vs the same statement as raw SQL"
TARGET = "≤ 50 ms and ≤ 1.5x"
WORDS_PER_CHUNK = 60
PER_DOCUMENT = 1000
BATCH = 2000


def _vocabulary(rng: random.Random, size: int = 6000) -> tuple[list[str], list[float]]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = sorted({"".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(size)})
    weights = [1.0 / (rank + 1) for rank in range(len(words))]
    return words, weights


def _load(kb, organization, n: int, rng: random.Random) -> list[str]:
    """N chunks in ``n / 1000`` documents; returns a sample of chunk texts to query with."""
    from django.db import connection

    from apps.knowledge.models import Document
    from apps.knowledge.search import vector_literal
    from kai_platform.llm.embeddings import builtin_embed

    words, weights = _vocabulary(rng)
    samples = []
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX IF EXISTS kchunk_embedding_hnsw")
    for doc_index in range((n + PER_DOCUMENT - 1) // PER_DOCUMENT):
        document = Document.objects.create(
            organization=organization,
            knowledge_base=kb,
            name=f"doc-{doc_index}",
            source_type="text",
            status="READY",
            chunk_count=PER_DOCUMENT,
        )
        count = min(PER_DOCUMENT, n - doc_index * PER_DOCUMENT)
        for start in range(0, count, BATCH):
            texts = [" ".join(rng.choices(words, weights, k=WORDS_PER_CHUNK)) for _ in range(min(BATCH, count - start))]
            samples += rng.sample(texts, 1)
            vectors = [vector_literal(v) for v in builtin_embed(texts)]
            with connection.cursor() as cursor:
                cursor.execute(
                    "INSERT INTO knowledge_chunk (id, organization_id, knowledge_base_id, document_id, position, text, "
                    "token_count, metadata, search_vector, embedding, created_at, updated_at) "
                    "SELECT gen_random_uuid(), %s, %s, %s, p, t, %s, '{}'::jsonb, to_tsvector('english', t), e::vector, "
                    "now(), now() FROM unnest(%s::int[], %s::text[], %s::text[]) AS u(p, t, e)",
                    [
                        organization.pk,
                        kb.pk,
                        document.pk,
                        WORDS_PER_CHUNK,
                        list(range(start, start + len(texts))),
                        texts,
                        vectors,
                    ],
                )
    with connection.cursor() as cursor:
        cursor.execute("SET maintenance_work_mem = '256MB'")
        cursor.execute(
            "CREATE INDEX kchunk_embedding_hnsw ON knowledge_chunk USING hnsw (embedding vector_cosine_ops) "
            "WITH (m = 16, ef_construction = 64)"
        )
        cursor.execute("ANALYZE knowledge_chunk")
    return samples


def _p50(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 2)


def measure(opts: dict) -> dict:
    import django

    django.setup()
    import psycopg
    from django.db import connection

    from apps.accounts.models import Organization
    from apps.knowledge import search
    from apps.knowledge.models import KnowledgeBase
    from kai_platform.llm.embeddings import builtin_embed

    rng = random.Random(15)
    organization = Organization.objects.create(name="bench-b15", slug=f"bench-b15-{uuid.uuid4().hex[:8]}")
    try:
        kb = KnowledgeBase.objects.create(organization=organization, name="b15")
        started = time.perf_counter()
        samples = _load(kb, organization, opts["chunks"], rng)
        load_s = time.perf_counter() - started
        queries = [" ".join(rng.sample(text.split(), 4)) for text in rng.choices(samples, k=opts["queries"])]
        for q in queries[:5]:  # warm caches and the index
            search.search(knowledge_bases=[kb], query=q, top_k=10)
        service, raw = [], []
        params = connection.get_connection_params()
        with psycopg.connect(
            **{k: v for k, v in params.items() if k in ("dbname", "user", "password", "host", "port")}, autocommit=True
        ) as conn:
            conn.execute(f"SET hnsw.ef_search = {search.ef_search(10)}")
            for q in queries:
                t = time.perf_counter()
                hits = search.search(knowledge_bases=[kb], query=q, top_k=10)
                service.append(time.perf_counter() - t)
                sql, sql_params = search.search_sql(
                    mode="hybrid",
                    organization_id=organization.pk,
                    knowledge_base_ids=[kb.pk],
                    vector=builtin_embed([q])[0],
                    query=q,
                    language="english",
                    top_k=10,
                )
                t = time.perf_counter()
                rows = conn.execute(sql, sql_params).fetchall()
                raw.append(time.perf_counter() - t)
                assert len(rows) == len(hits)
        result = {
            "chunks": opts["chunks"],
            "queries": len(queries),
            "load_seconds": round(load_s, 1),
            "p50_ms": _p50(service),
            "p95_ms": round(sorted(service)[int(len(service) * 0.95) - 1] * 1000, 2),
            "raw_p50_ms": _p50(raw),
        }
        result["ratio"] = round(result["p50_ms"] / result["raw_p50_ms"], 2)
        print(
            f"B15 knowledge search over {opts['chunks']} chunks (loaded in {result['load_seconds']} s): hybrid p50 "
            f"{result['p50_ms']} ms (p95 {result['p95_ms']} ms), raw SQL p50 {result['raw_p50_ms']} ms, "
            f"ratio {result['ratio']}x"
        )
        return result
    finally:
        organization.delete()


def run(ctx=None):
    if hasattr(ctx, "run_python"):  # called by the runner: measure in a child, answer table rows
        from bench import child
        from bench.common import log
        from bench.results import Row, verdict

        attributes = {"chunks": 20_000 if ctx.quick else DEFAULTS["chunks"], "queries": DEFAULTS["queries"]}
        log(f"B15: bench/b15_knowledge_search.py run(ctx={attributes})")
        data = child.call(ctx, "b15_knowledge_search", attributes, timeout=1800)
        return [
            Row(
                id="B15",
                measures=MEASURES,
                target=TARGET,
                figure=data["p50_ms"],
                figure_text=f"{data['p50_ms']:.1f} ms (p95 {data['p95_ms']:.1f})",
                baseline=data["raw_p50_ms"],
                baseline_text=f"raw SQL {data['raw_p50_ms']:.1f} ms",
                ratio=data["ratio"],
                ratio_text=f"{data['ratio']:.2f}x",
                status=verdict(data["p50_ms"] <= 50 and data["ratio"] <= 1.5),
                note=f"{data['chunks']} chunks (builtin embeddings, HNSW cosine), {data['queries']} queries, top 10",
                details=data,
            )
        ], []
    opts = {key: int(getattr(ctx, key, None) or value) for key, value in DEFAULTS.items()}
    return measure(opts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for key, value in DEFAULTS.items():
        parser.add_argument(f"--{key}", type=int, default=value)
    measure(vars(parser.parse_args()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
