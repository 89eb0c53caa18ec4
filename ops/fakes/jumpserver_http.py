"""The HTTP plumbing of a fake Jumpserver: answers, request bodies, Django REST framework's limit/offset
pagination (`rest_framework/pagination.py: LimitOffsetPagination` under jumpserver/jumpserver v3.10.23's
`apps/jumpserver/rewriting/pagination.py` with no default page size and a 10000 maximum), and the
`http.server` handler."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from remotegpu.ops.fakes.jumpserver_fields import ApiError
from remotegpu.ops.fakes.served import Answer, RoutedHandler

MAX_LIMIT = 10000


@dataclass
class Reply:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any, **headers: str) -> Reply:
        return cls(status, b"" if payload is None else json.dumps(payload).encode(), headers=headers)

    @classmethod
    def page(cls, status: int, text: str | bytes) -> Reply:
        return cls(status, text.encode() if isinstance(text, str) else text, "text/html; charset=utf-8")


def payload(body: bytes) -> Any:
    try:
        return json.loads(body) if body.strip() else {}
    except ValueError as error:
        raise ApiError(400, {"detail": f"JSON parse error - {error}", "code": "parse_error"}) from None


def json_object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        # A list is a bulk request, which the fake does not implement.
        raise ApiError(
            400,
            {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {type(data).__name__}."]},
        )
    return data


def page(items: list[dict[str, Any]], query: dict[str, str], host: str, path: str) -> Any:
    """DRF's `LimitOffsetPagination`: a bare list without a valid `limit`, else one page with links."""
    limit, offset = _number(query.get("limit"), strict=True), _number(query.get("offset"), strict=False) or 0
    if limit is None:
        return items
    limit = min(limit, MAX_LIMIT)

    def link(new_offset: int | None) -> str:
        params = {k: v for k, v in query.items() if k != "offset"}
        params["limit"] = str(limit)
        if new_offset:
            params["offset"] = str(new_offset)
        return f"http://{host}{path}?{urlencode(params)}"

    return {
        "count": len(items),
        "next": link(offset + limit) if offset + limit < len(items) else None,
        "previous": link(max(offset - limit, 0)) if offset > 0 else None,
        "results": items[offset : offset + limit],
    }


def _number(value: str | None, *, strict: bool) -> int | None:
    try:
        parsed = int(value or "")
    except ValueError:
        return None
    return parsed if parsed > 0 or (parsed == 0 and not strict) else None


class Handler(RoutedHandler):
    """Jumpserver's answers: a 401 challenges for a bearer token; an empty body names no content type."""

    content_type_when_empty = False

    def product_headers(self, answer: Answer) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"} if answer.status == 401 else {}
