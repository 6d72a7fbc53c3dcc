"""JSON rendered with orjson, and NDJSON for event/audit exports."""

from __future__ import annotations

import decimal
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson
from django.http import StreamingHttpResponse
from django.utils.functional import Promise
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer, JSONRenderer

if TYPE_CHECKING:
    from rest_framework.request import Request


def _default(value: object) -> object:
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)

    if isinstance(value, Promise):
        return str(value)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def dumps(data: object) -> bytes:
    try:
        return orjson.dumps(data, default=_default, option=orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError as exc:
        if "64-bit" not in str(exc):
            raise
        # JSON allows integers of any size (stored JSON documents may hold them); orjson does not
        return json.dumps(data, default=_default, ensure_ascii=False, separators=(",", ":")).encode()


class KaiJSONRenderer(JSONRenderer):
    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Mapping[str, Any] | None = None
    ) -> bytes:
        if data is None:
            return b""
        return dumps(data)


class NDJSONRenderer(BaseRenderer):
    """One JSON document per line. Views stream these themselves (``stream_ndjson``)."""

    media_type = "application/x-ndjson"
    format = "ndjson"
    charset = None

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Mapping[str, Any] | None = None
    ) -> bytes:
        if isinstance(data, dict) and "items" in data:
            data = data["items"]
        if isinstance(data, dict):
            data = [data]
        return b"".join(dumps(item) + b"\n" for item in data or [])


class JSONLinesRenderer(NDJSONRenderer):
    media_type = "application/jsonl"
    format = "jsonl"


EXPORT_FORMATS = frozenset({"ndjson", "jsonl"})


def stream_json_lines(rows: Iterable[object], *, renderer: BaseRenderer, filename: str) -> StreamingHttpResponse:
    """A streaming download of ``rows`` (dicts) as JSON lines, in the renderer's media type."""
    response = StreamingHttpResponse((dumps(row) + b"\n" for row in rows), content_type=renderer.media_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}.{renderer.format}"'
    return response


class KaiContentNegotiation(DefaultContentNegotiation):
    """DRF's negotiation, answered at once in the common case: one renderer, no ``?format=`` and
    no ``Accept`` header (or ``*/*``) -- then DRF's answer is always that renderer and its media
    type. Anything else (several renderers, a format, a real Accept list, a 406) is DRF's."""

    def select_renderer(
        self,
        request: Request,
        renderers: Sequence[BaseRenderer],  # type: ignore[override]  # DRF passes the view's list; its stubs say Iterable
        format_suffix: str | None = None,
    ) -> tuple[BaseRenderer, str]:
        if len(renderers) == 1 and not format_suffix:
            accept = request.META.get("HTTP_ACCEPT")
            if (not accept or accept == "*/*") and self.settings.URL_FORMAT_OVERRIDE not in request.query_params:
                return renderers[0], renderers[0].media_type
        chosen: tuple[BaseRenderer, str] = super().select_renderer(request, renderers, format_suffix)
        return chosen
