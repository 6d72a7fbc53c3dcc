"""Extraction of every format, token-aware chunking and the builtin embedder (no database)."""

import subprocess
import sys

import pytest

from apps.knowledge.chunking import chunk_text
from apps.knowledge.extract import ExtractionError, extract
from kai_platform.llm.embeddings import BUILTIN_DIMENSIONS, builtin_embedding
from tests.knowledge.samples import docx_bytes, pdf_bytes


def test_plain_markdown_and_html():
    assert extract(b"hello world", name="a.txt").text == "hello world"
    assert "# Title" in extract(b"# Title\n\nbody", name="a.md").text
    html = b"<html><head><title>T</title><style>p{}</style></head><body><p>One</p><script>x=1</script><p>Two</p>"
    got = extract(html, name="page.html")
    assert got.text == "One\n\nTwo" or got.text.split() == ["One", "Two"]
    assert got.sections[0][1] == {"title": "T"}


def test_csv_rows_keep_their_headers_and_json_keeps_paths():
    text = extract(b"city,country\nParis,France\nRome,Italy\n", name="c.csv").text
    assert "city: Paris; country: France" in text and "city: Rome; country: Italy" in text
    text = extract(b'{"a": {"b": [1, {"c": "deep"}]}}', name="d.json").text
    assert "a.b[1].c: deep" in text
    with pytest.raises(ExtractionError, match="not valid JSON"):
        extract(b"{nope", name="bad.json")


def test_pdf_pages_and_docx_paragraphs_and_tables():
    got = extract(pdf_bytes(["First page about otters", "Second page about beavers"]), name="x.pdf")
    assert got.pages == 2 and got.format == "pdf"
    assert [meta for _, meta in got.sections] == [{"page": 1}, {"page": 2}]
    assert "otters" in got.sections[0][0] and "beavers" in got.sections[1][0]
    got = extract(docx_bytes(["Alpha paragraph", "Beta paragraph"], [["k", "v"], ["colour", "blue"]]), name="y.docx")
    assert "Alpha paragraph" in got.text and "colour | blue" in got.text


def test_unsupported_and_broken_files_name_the_problem():
    with pytest.raises(ExtractionError, match="unsupported document type"):
        extract(b"\x89PNG....", name="x.png", content_type="image/png")
    with pytest.raises(ExtractionError, match="unreadable PDF"):
        extract(b"%PDF-1.4 garbage", name="x.pdf")
    with pytest.raises(ExtractionError, match="unreadable Word"):
        extract(b"PK not a docx", name="x.docx")


def test_chunks_respect_the_token_budget_overlap_and_sentences():
    text = " ".join(f"Sentence {i} is here." for i in range(200))
    pieces = chunk_text(text, size=40, overlap=8)
    assert all(p.tokens <= 40 for p in pieces) and len(pieces) > 20
    assert all(p.text.endswith(".") for p in pieces[:-1])  # cut at a sentence end
    first_tail = pieces[0].text.split()[-3:]
    assert " ".join(first_tail) in pieces[1].text  # consecutive chunks overlap
    assert chunk_text("", size=10, overlap=2) == []


def test_builtin_embeddings_are_unit_vectors_that_rank_shared_words_higher():
    a = builtin_embedding("The otter swims in the river")
    b = builtin_embedding("an otter swims")
    c = builtin_embedding("quarterly revenue grew")
    dot = lambda x, y: sum(i * j for i, j in zip(x, y))  # noqa: E731
    assert len(a) == BUILTIN_DIMENSIONS and abs(dot(a, a) - 1) < 1e-9
    assert dot(a, b) > 0.3 > dot(a, c)
    assert builtin_embedding("") == [0.0] * BUILTIN_DIMENSIONS


def test_builtin_embeddings_are_identical_in_another_process():
    code = (
        "from kai_platform.llm.embeddings import builtin_embedding as e;"
        "print(repr(e('Deterministic across processes, not salted')[:8]))"
    )
    other = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    ).stdout.strip()
    assert other == repr(builtin_embedding("Deterministic across processes, not salted")[:8])
