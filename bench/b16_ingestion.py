"""B16 (knowledge): ingestion throughput in pages per second — a PDF uploaded to a knowledge base
and indexed by ``apps.knowledge.ingest.document_ingest`` (read from storage, extract, chunk,
embed with the builtin embedder, write chunks with their tsvector and HNSW entries, events) —
beside the bare extraction of the same file (``pypdf`` through ``extract``).

    DATABASE_URL=… REDIS_URL=… .venv/bin/python bench/b16_ingestion.py [--pages 200] [--repeats 3]

The PDF is synthetic: every page holds ~300 words of text. The ratio says what share of the bare
extraction's speed ingestion keeps (reported; no target in the issue).
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

DEFAULTS = {"pages": 200, "repeats": 3}
MEASURES = "ingestion pages/s vs bare extraction of the same PDF"
WORDS_PER_PAGE = 300


def _pdf(pages: int) -> bytes:
    from tests.knowledge.samples import pdf_bytes

    rng = random.Random(16)
    words = [
        "otter",
        "river",
        "stone",
        "current",
        "harbour",
        "kelp",
        "tide",
        "shell",
        "fisher",
        "north",
        "coast",
        "winter",
        "signal",
        "keeper",
        "light",
        "storm",
        "ledger",
        "engine",
        "valve",
        "copper",
    ]
    return pdf_bytes([" ".join(rng.choices(words, k=WORDS_PER_PAGE)) + "." for _ in range(pages)])


def measure(opts: dict) -> dict:
    import django

    django.setup()
    from django.core.files.base import ContentFile

    from apps.accounts.models import Organization
    from apps.knowledge import services
    from apps.knowledge.extract import extract
    from apps.knowledge.ingest import document_ingest
    from apps.knowledge.models import Document

    data = _pdf(opts["pages"])
    organization = Organization.objects.create(
        name="bench-b16",
        slug=f"bench-b16-{uuid.uuid4().hex[:8]}",
        settings={"knowledge_limits": {"chunks": 10**9, "bytes": 10**12}},
    )
    try:
        kb = services.knowledge_base_create(organization=organization, actor=None, data={"name": "b16"})
        bare, ingest, chunks = [], [], 0
        for _ in range(opts["repeats"]):
            started = time.perf_counter()
            extracted = extract(data, name="bench.pdf", content_type="application/pdf")
            bare.append(time.perf_counter() - started)
            assert extracted.pages == opts["pages"]
            document = services.document_create_file(
                knowledge_base=kb, actor=None, upload=ContentFile(data, name="bench.pdf")
            )
            started = time.perf_counter()
            outcome = document_ingest(document_id=document.pk, version=document.version)
            ingest.append(time.perf_counter() - started)
            assert outcome == "ready", Document.objects.get(pk=document.pk).error
            chunks = Document.objects.get(pk=document.pk).chunk_count
        pages = opts["pages"]
        result = {
            "pages": pages,
            "repeats": opts["repeats"],
            "chunks": chunks,
            "bytes": len(data),
            "ingest_pages_per_s": round(pages / statistics.median(ingest), 1),
            "bare_pages_per_s": round(pages / statistics.median(bare), 1),
        }
        result["ratio"] = round(result["ingest_pages_per_s"] / result["bare_pages_per_s"], 3)
        print(
            f"B16 ingestion of a {pages}-page PDF ({chunks} chunks): {result['ingest_pages_per_s']} pages/s, bare "
            f"extraction {result['bare_pages_per_s']} pages/s, ratio {result['ratio']}x"
        )
        return result
    finally:
        organization.delete()


def run(ctx=None):
    if hasattr(ctx, "run_python"):  # called by the runner: measure in a child, answer table rows
        from bench import child
        from bench.common import log
        from bench.results import Row

        attributes = {"pages": 50 if ctx.quick else DEFAULTS["pages"], "repeats": DEFAULTS["repeats"]}
        log(f"B16: bench/b16_ingestion.py run(ctx={attributes})")
        data = child.call(ctx, "b16_ingestion", attributes)
        return [
            Row(
                id="B16",
                measures=MEASURES,
                target="(reported)",
                figure=data["ingest_pages_per_s"],
                figure_text=f"{data['ingest_pages_per_s']:.1f} pages/s",
                baseline=data["bare_pages_per_s"],
                baseline_text=f"extraction {data['bare_pages_per_s']:.1f} pages/s",
                ratio=data["ratio"],
                ratio_text=f"{data['ratio']:.2f}x",
                status="INFO",
                note=f"{data['pages']}-page PDF, {data['chunks']} chunks, median of {data['repeats']}; ingestion "
                "also chunks, embeds (builtin), writes chunks + tsvector + HNSW entries and events",
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
