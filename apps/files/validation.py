"""File names and content types: never trusted from the client."""

from __future__ import annotations

import os
import re
import unicodedata

import puremagic

_RESERVED = re.compile(r'[<>:"|?*\x00]')
_SPACES = re.compile(r"\s+")
MAX_NAME = 200


def sanitize_filename(name: str) -> str:
    """A safe display/storage name: no directories (``/`` or ``\\``), no control or format
    characters, no leading dots, reserved characters replaced, at most 200 characters with the
    extension kept."""
    name = unicodedata.normalize("NFC", str(name or ""))
    name = re.split(r"[\\/]", name)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = _RESERVED.sub("_", name)
    name = _SPACES.sub(" ", name).strip().lstrip(".").strip()
    if len(name) > MAX_NAME:
        stem, ext = os.path.splitext(name)
        ext = ext[:20]
        name = stem[: MAX_NAME - len(ext)] + ext
    return name or "file"


#: zip containers told apart by the member names in their first local headers (puremagic calls every
#: zip a .docx); a plain archive stays application/zip
_ZIP_MEMBERS = (
    (b"word/", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    (b"xl/", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    (b"ppt/", "application/vnd.openxmlformats-officedocument.presentationml.presentation"),
    (b"META-INF/MANIFEST.MF", "application/java-archive"),
)


def _zip_type(head: bytes) -> str:
    if head.startswith(b"PK\x03\x04") and head[30:38] == b"mimetype":
        declared = head[38 : 38 + 80].split(b"PK", 1)[0].strip()
        if declared.startswith(b"application/") and declared.isascii():
            return declared.decode()  # OpenDocument/EPUB: the stored mimetype member comes first
    for marker, mime in _ZIP_MEMBERS:
        if marker in head:
            return mime
    return "application/zip"


def sniff_content_type(head: bytes) -> str:
    """The type of the first bytes of a file: magic numbers first (puremagic), then UTF-8 text."""
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        return _zip_type(head)
    if head:
        try:
            return puremagic.from_string(head, mime=True) or _texty(head)
        except puremagic.PureError:
            pass
    return _texty(head)


def _texty(head: bytes) -> str:
    if not head:
        return "application/octet-stream"
    if b"\x00" in head:
        return "application/octet-stream"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not merely a multi-byte character cut at the edge
            return "application/octet-stream"
    stripped = head.lstrip()
    if stripped[:1] in (b"{", b"["):
        return "application/json"
    return "text/plain"
