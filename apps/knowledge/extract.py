"""Text out of documents: txt, md, html, csv, json, pdf (pypdf), docx (python-docx).

``extract(data, name, content_type)`` → ``Extracted``: the sections of text (a PDF's pages, else
one) with their metadata, and the page count. Unsupported or unreadable input raises
``ExtractionError`` with a message for the document's ``error``."""

from __future__ import annotations

import csv
import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from html.parser import HTMLParser

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
#: format → (extensions, content types)
FORMATS = {
    "txt": ((".txt", ".text", ".log"), ("text/plain",)),
    "md": ((".md", ".markdown"), ("text/markdown", "text/x-markdown")),
    "html": ((".html", ".htm", ".xhtml"), ("text/html", "application/xhtml+xml")),
    "csv": ((".csv",), ("text/csv", "application/csv")),
    "json": ((".json",), ("application/json",)),
    "pdf": ((".pdf",), ("application/pdf",)),
    "docx": ((".docx",), (DOCX,)),
}


class ExtractionError(Exception):
    pass


@dataclass
class Extracted:
    sections: list[tuple[str, dict]] = field(default_factory=list)
    pages: int = 1
    format: str = "txt"

    @property
    def text(self) -> str:
        return "\n\n".join(text for text, _ in self.sections)


def detect_format(name: str, content_type: str) -> str | None:
    base = (content_type or "").split(";")[0].strip().lower()
    ext = os.path.splitext((name or "").lower())[1]
    for fmt, (exts, _types) in FORMATS.items():
        if ext in exts:
            return fmt
    for fmt, (_exts, types) in FORMATS.items():
        if base in types:
            return fmt
    if base.startswith("text/"):
        return "txt"
    return None


def _decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "utf-16") if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ("utf-8-sig",):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


class _HTMLText(HTMLParser):
    SKIP = {"script", "style", "noscript", "template", "svg", "head"}
    BLOCK = {
        "p",
        "div",
        "br",
        "li",
        "tr",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "section",
        "article",
        "pre",
        "blockquote",
        "table",
        "ul",
        "ol",
        "header",
        "footer",
        "title",
    }

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skipping += 1
        if tag == "title":
            self._in_title = True
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP and self.skipping:
            self.skipping -= 1
        if tag == "title":
            self._in_title = False
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        if not self.skipping:
            self.parts.append(data)


def _tidy(text: str) -> str:
    lines = [" ".join(line.split()) for line in text.splitlines()]
    out, blank = [], False
    for line in lines:
        if line:
            out.append(line)
            blank = False
        elif not blank and out:
            out.append("")
            blank = True
    return "\n".join(out).strip()


def _html(data: bytes) -> Extracted:
    parser = _HTMLText()
    parser.feed(_decode(data))
    parser.close()
    meta = {"title": " ".join(parser.title.split())} if parser.title.strip() else {}
    return Extracted([(_tidy("".join(parser.parts)), meta)], format="html")


def _csv(data: bytes) -> Extracted:
    text = _decode(data)
    try:
        dialect = csv.Sniffer().sniff(text[:4096])
    except csv.Error:
        dialect = csv.excel
    rows = list(csv.reader(io.StringIO(text), dialect))
    if not rows:
        return Extracted([("", {})], format="csv")
    header, lines = rows[0], []
    for row in rows[1:]:
        lines.append("; ".join(f"{h}: {v}" for h, v in zip(header, row) if v.strip()))
    return Extracted([("\n".join([", ".join(header), *lines]), {"rows": len(rows) - 1})], format="csv")


def _json(data: bytes) -> Extracted:
    try:
        value = json.loads(_decode(data))
    except ValueError as exc:
        raise ExtractionError(f"not valid JSON: {exc}") from exc
    lines: list[str] = []

    def walk(node, path):
        if isinstance(node, dict):
            for key, child in node.items():
                walk(child, f"{path}.{key}" if path else str(key))
        elif isinstance(node, list):
            for index, child in enumerate(node):
                walk(child, f"{path}[{index}]")
        elif node is not None:
            lines.append(f"{path}: {node}" if path else str(node))

    walk(value, "")
    return Extracted([("\n".join(lines), {})], format="json")


def _pdf(data: bytes) -> Extracted:
    # deferred: heavy — pypdf, loaded on first use to keep process start fast
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise ExtractionError("the PDF is encrypted")
        sections = [
            (_tidy(page.extract_text() or ""), {"page": number}) for number, page in enumerate(reader.pages, start=1)
        ]
    except ExtractionError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise ExtractionError(f"unreadable PDF: {exc}") from exc
    return Extracted(sections, pages=len(sections), format="pdf")


def _docx(data: bytes) -> Extracted:
    # deferred: heavy — python-docx, loaded on first use to keep process start fast
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, zipfile.BadZipFile, ValueError, KeyError) as exc:
        raise ExtractionError(f"unreadable Word document: {exc}") from exc
    parts = [p.text for p in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            parts.append(" | ".join(cell.text.strip() for cell in row.cells))
    return Extracted([(_tidy("\n".join(parts)), {})], format="docx")


def extract(data: bytes, *, name: str = "", content_type: str = "") -> Extracted:
    fmt = detect_format(name, content_type)
    if fmt is None:
        raise ExtractionError(
            f"unsupported document type {content_type or os.path.splitext(name)[1] or 'unknown'!r}; "
            f"supported: {', '.join(FORMATS)}"
        )
    if fmt == "html":
        return _html(data)
    if fmt == "csv":
        return _csv(data)
    if fmt == "json":
        return _json(data)
    if fmt == "pdf":
        return _pdf(data)
    if fmt == "docx":
        return _docx(data)
    if b"\x00" in data[:8192]:
        raise ExtractionError("the file is binary, not text")
    return Extracted([(_decode(data).strip(), {})], format=fmt)
