"""Upload handling that enforces the per-file size cap while the bytes stream in, hashes them
on the way, and keeps the first bytes for content sniffing. Files land in temporary files on
disk, never whole in memory."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.files.uploadhandler import TemporaryFileUploadHandler

from kai_platform.api.errors import PayloadTooLarge

SNIFF_BYTES = 4096
#: bytes the multipart parser hands the handler at a time: Django's 64 KiB made the parse and the
#: hash of a 50 MB upload cost ~40 % more than 256 KiB (bench B12, docs/benchmarks.md); 1 MiB is
#: slower again (the parser copies each chunk while it looks for the boundary)
CHUNK_BYTES = 256 * 1024


def max_upload_bytes() -> int:
    return settings.KAI_MAX_UPLOAD_MB * 1024 * 1024


class CappedUploadHandler(TemporaryFileUploadHandler):
    chunk_size = CHUNK_BYTES

    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        self._received = 0
        self._sha256 = hashlib.sha256()
        self._head = b""

    def receive_data_chunk(self, raw_data, start):
        self._received += len(raw_data)
        if self._received > max_upload_bytes():
            raise PayloadTooLarge(
                f"'{self.file_name}' exceeds the upload limit of {settings.KAI_MAX_UPLOAD_MB} MB.",
                errors=[{"field": "file", "message": f"max {settings.KAI_MAX_UPLOAD_MB} MB per file"}],
            )
        self._sha256.update(raw_data)
        if len(self._head) < SNIFF_BYTES:
            self._head += raw_data[: SNIFF_BYTES - len(self._head)]
        return super().receive_data_chunk(raw_data, start)

    def file_complete(self, file_size):
        uploaded = super().file_complete(file_size)
        if uploaded is not None:
            # carried on the file to store_file, which reads them back with getattr
            uploaded.kai_sha256 = self._sha256.hexdigest()  # type: ignore[attr-defined]
            uploaded.kai_head = self._head  # type: ignore[attr-defined]
        return uploaded
