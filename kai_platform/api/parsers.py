"""JSON parsing with orjson and a clear error for malformed bodies."""

from collections.abc import Mapping
from typing import IO, Any

import orjson
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


class KaiJSONParser(JSONParser):
    def parse(
        self, stream: IO[Any], media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> Any:
        raw = stream.read() if stream is not None else b""
        if not raw.strip():
            return {}
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"Malformed JSON body: {exc}") from None
        # PostgreSQL text and jsonb cannot hold U+0000: refuse it here rather than fail at the database
        if b"\\u0000" in raw and _has_nul(data):
            raise ParseError("Malformed JSON body: the NUL character (\\u0000) is not allowed in strings or keys")
        return data
