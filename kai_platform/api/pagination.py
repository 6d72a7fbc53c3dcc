"""One pagination shape: ``?limit=&offset=`` → ``{items, total, limit, offset, has_more}``.
``?page=`` (1-based, docs/decisions.md) is the other way to say where a page starts: offset =
(page - 1) × limit; an explicit ``offset`` wins. A limit over 100 is capped; a value that
is not an integer in range is a 400.

A page is read as ``limit + 1`` rows: when that many do not come back the total is known
(``offset`` + the rows), so a list that fits its page costs one query instead of COUNT + SELECT;
only a page with more after it (or past the end) counts.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from django.db.models import QuerySet
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response

if TYPE_CHECKING:
    from rest_framework.request import Request
    from rest_framework.views import APIView

MAX_LIMIT = 100
# OFFSET is a bigint in PostgreSQL: a larger one (offset + limit + 1 included) is a 500, not a page.
MAX_OFFSET = 2**62


class KaiPagination(LimitOffsetPagination):
    default_limit: int = 20
    max_limit: int = MAX_LIMIT

    def _integer(self, request: Request, name: str, minimum: int) -> int | None:
        """The query parameter as an integer ≥ ``minimum``; absent → None; anything else → 400."""
        raw = request.query_params.get(name)
        if raw is None:
            return None
        try:
            value = int(raw)
        except (TypeError, ValueError):
            value = None
        if value is None or value < minimum:
            raise ValidationError({name: [f"Must be an integer ≥ {minimum}."]})
        return value

    def get_limit(self, request: Request) -> int:
        value = self._integer(request, self.limit_query_param, 1)
        return self.default_limit if value is None else min(value, self.max_limit)

    page_query_param = "page"

    def get_offset(self, request: Request) -> int:
        offset = self._integer(request, self.offset_query_param, 0)
        page = self._integer(request, self.page_query_param, 1)  # checked even where offset wins
        if offset is not None:
            return min(offset, MAX_OFFSET)
        return 0 if page is None else min((page - 1) * self.get_limit(request), MAX_OFFSET)

    def get_schema_operation_parameters(self, view: APIView) -> list[dict[str, Any]]:
        limit, offset = super().get_schema_operation_parameters(view)
        limit["schema"]["minimum"], offset["schema"]["minimum"] = 1, 0
        return [
            limit,
            offset,
            {
                "name": self.page_query_param,
                "required": False,
                "in": "query",
                "description": "1-based page number (offset = (page - 1) × limit); ignored when offset is given.",
                "schema": {"type": "integer", "minimum": 1},
            },
        ]

    def paginate_queryset(
        self, queryset: QuerySet[Any] | Sequence[Any], request: Request, view: APIView | None = None
    ) -> list[Any] | None:
        if not isinstance(queryset, QuerySet):
            return super().paginate_queryset(queryset, request, view)
        self.request = request
        self.limit = self.get_limit(request)
        self.offset = self.get_offset(request)
        rows = list(queryset[self.offset : self.offset + self.limit + 1])
        if len(rows) > self.limit:
            del rows[self.limit :]
            self.count = max(queryset.count(), self.offset + len(rows) + 1)
        elif rows or self.offset == 0:
            self.count = self.offset + len(rows)
        else:
            self.count = queryset.count()
        return rows

    def get_paginated_response(self, data: Any) -> Response:
        return Response(self.page_envelope(data))

    def page_envelope(self, items: Collection[Any]) -> dict[str, Any]:
        return {
            "items": items,
            "total": self.count,
            "limit": self.limit,
            "offset": self.offset,
            "has_more": (self.offset or 0) + len(items) < (self.count or 0),
        }

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
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
