"""JSON parsing with orjson and a clear error for malformed bodies."""
import orjson
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class KaiJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read() if stream is not None else b""
        if not raw.strip():
            return {}
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"Malformed JSON body: {exc}") from None
