"""Token-aware chunking with overlap. Tokens are the platform's estimate (words and punctuation,
``kai_platform.llm.base``); a chunk holds at most ``size`` of them, ends at a sentence or line
break when one falls in its last fifth, and shares ``overlap`` tokens with the next. Chunks keep
the original text (spacing and punctuation) between their first and last token."""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(r"\w+|[^\w\s]")
_SENTENCE_END = {".", "!", "?", ";", ":"}


@dataclass
class Piece:
    text: str
    tokens: int
    metadata: dict


def _break_at(tokens: list[re.Match], text: str, start: int, end: int) -> int:
    """The best end (exclusive) at or before ``end``: after a sentence end or before a blank line."""
    floor = start + max(1, (end - start) * 4 // 5)
    for i in range(end - 1, floor - 1, -1):
        if tokens[i].group() in _SENTENCE_END:
            return i + 1
        if i + 1 < len(tokens) and "\n" in text[tokens[i].end() : tokens[i + 1].start()]:
            return i + 1
    return end


def chunk_text(text: str, *, size: int, overlap: int, metadata: dict | None = None) -> list[Piece]:
    if size < 1:
        raise ValueError("chunk size must be at least 1 token")
    overlap = max(0, min(overlap, size // 2))
    tokens = list(_TOKEN.finditer(text or ""))
    pieces: list[Piece] = []
    start = 0
    while start < len(tokens):
        end = min(start + size, len(tokens))
        if end < len(tokens):
            end = _break_at(tokens, text, start, end)
        pieces.append(Piece(text[tokens[start].start() : tokens[end - 1].end()], end - start, dict(metadata or {})))
        if end >= len(tokens):
            break
        start = max(end - overlap, start + 1)
    return pieces


def chunk_sections(sections: list[tuple[str, dict]], *, size: int, overlap: int) -> list[Piece]:
    pieces: list[Piece] = []
    for text, metadata in sections:
        pieces.extend(chunk_text(text, size=size, overlap=overlap, metadata=metadata))
    return pieces
