"""Refuse an oversize request body at the ASGI boundary, from its Content-Length, before a byte
of it is read: 413 with the error envelope. Multipart uploads may carry up to
``KAI_MAX_UPLOAD_FILES`` files of ``KAI_MAX_UPLOAD_MB`` each (the per-file cap is then enforced
again while each file streams, apps/files/uploads.py); other bodies ``KAI_MAX_BODY_BYTES``."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from django.conf import settings

from kai_platform.api.middleware import _REQUEST_ID_RE
from kai_platform.asgitypes import ASGIApp, Receive, Scope, Send

MULTIPART_SLACK = 1024 * 1024  # boundaries and form fields around the files


def body_limit(content_type: str) -> int:
    if content_type.startswith("multipart/form-data"):
        return settings.KAI_MAX_UPLOAD_MB * 1024 * 1024 * settings.KAI_MAX_UPLOAD_FILES + MULTIPART_SLACK
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            length = headers.get(b"content-length")
            content_type = headers.get(b"content-type", b"").decode("latin-1")
            if length is None and content_type.startswith("multipart/form-data"):
                # Django's multipart parser needs the length; a chunked upload would arrive empty.
                await self._refuse(
                    send,
                    headers,
                    status=411,
                    type_="length_required",
                    detail="Uploads need a Content-Length header (chunked multipart is not accepted).",
                )
                return
            if length is not None:
                limit = body_limit(content_type)
                try:
                    size = int(length)
                except ValueError:
                    size = -1
                if size > limit:
                    await self._refuse(
                        send,
                        headers,
                        status=413,
                        type_="payload_too_large",
                        detail=f"The request body of {size} bytes exceeds the limit of {limit} bytes.",
                        errors=[{"field": None, "message": f"max {limit} bytes"}],
                    )
                    return
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(
        send: Send,
        headers: dict[bytes, bytes],
        *,
        status: int,
        type_: str,
        detail: str,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")
        if not _REQUEST_ID_RE.match(request_id):
            request_id = uuid.uuid4().hex
        body = orjson.dumps(
            {"detail": detail, "type": type_, "code": "GENERAL_001", "errors": errors or [], "request_id": request_id}
        )
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-request-id", request_id.encode()),
                    (b"api-version", b"v1"),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
