"""One pagination shape: ``?limit=&offset=`` → ``{items, total, limit, offset, has_more}``."""
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response

MAX_LIMIT = 100


class KaiPagination(LimitOffsetPagination):
    default_limit = 20
    max_limit = MAX_LIMIT

    def get_limit(self, request):
        raw = request.query_params.get(self.limit_query_param)
        if raw is None:
            return self.default_limit
        try:
            value = int(raw)
        except (TypeError, ValueError):
            return self.default_limit
        return max(1, min(value, self.max_limit))

    def get_offset(self, request):
        try:
            return max(0, int(request.query_params.get(self.offset_query_param, 0)))
        except (TypeError, ValueError):
            return 0

    def get_paginated_response(self, data):
        return Response(self.page_envelope(data))

    def page_envelope(self, items) -> dict:
        return {
            "items": items,
            "total": self.count,
            "limit": self.limit,
            "offset": self.offset,
            "has_more": self.offset + len(items) < self.count,
        }

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["items", "total", "limit", "offset", "has_more"],
            "properties": {
                "items": schema,
                "total": {"type": "integer", "example": 42},
                "limit": {"type": "integer", "example": 20},
                "offset": {"type": "integer", "example": 0},
                "has_more": {"type": "boolean"},
            },
        }
