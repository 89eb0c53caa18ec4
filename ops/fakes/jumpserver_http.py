"""The HTTP plumbing of a fake Jumpserver: answers, request bodies, Django REST framework's limit/offset
pagination (`rest_framework/pagination.py: LimitOffsetPagination` under jumpserver/jumpserver v3.10.23's
`apps/jumpserver/rewriting/pagination.py` with no default page size and a 10000 maximum), and the
`http.server` handler."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlencode

from remotegpu.ops.fakes.jumpserver_fields import ApiError

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


class Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive, every method routed to the server's `handle` (the fake's)."""

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in two writes; without this, Nagle and delayed ACKs add 40 ms a call.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        handle: Callable[[str, str, dict[str, str], bytes], Reply | None] = self.server.handle  # type: ignore[attr-defined]
        reply = handle(self.command, self.path, headers, body)
        if reply is None:
            self.close_connection = True
            return
        self.send_response(reply.status)
        if reply.status == 401:
            self.send_header("WWW-Authenticate", "Bearer")
        if reply.body:
            self.send_header("Content-Type", reply.content_type)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _answer  # noqa: N815 (http.server's names)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: tests and `remotegpu dev` keep their output to themselves."""
