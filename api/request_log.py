"""One log line per API call, and the request id that ties a user's report to it.

The id is the caller's `X-Request-ID` when it is a short token (a proxy's or a client's own), else a new
one; it is bound to every record logged while the request runs (`core.platform.log_context`), returned
in the `X-Request-ID` header, and written into problem documents (`api.problems`). The line carries the
method, the route template (never the path with its ids, never a query, a body or a token), the status,
the duration, and who called when the request was signed in.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from remotegpu.core.platform.log_context import bound_log_fields

log = logging.getLogger("remotegpu.api.requests")

HEADER = b"x-request-id"
_ACCEPTED = re.compile(rb"^[A-Za-z0-9._:-]{1,64}$")
_IDS = {"environment_id": "environment", "workspace_id": "workspace"}
"""Path parameters worth a field of their own in the line (the log's other records carry them too)."""


def request_id_of(scope: Scope) -> str:
    """The caller's request id when it is acceptable, else a new random one."""
    for name, value in scope.get("headers", ()):
        if name == HEADER and _ACCEPTED.match(value):
            return str(value.decode())
    return uuid.uuid4().hex


class RequestLogMiddleware:
    """ASGI middleware: bind the request id, answer it in a header, log one line when the answer ends."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        status = 500
        started = time.perf_counter()

        async def answer(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [*message.get("headers", ()), (HEADER, request_id.encode())]
            await send(message)

        params: dict[str, Any] = dict(scope.get("path_params") or {})
        ids = {field: str(params[name]) for name, field in _IDS.items() if name in params}
        with bound_log_fields(request_id=request_id, **ids) as fields:
            try:
                await self.app(scope, receive, answer)
            finally:
                log.info(
                    "request",
                    extra={
                        **fields,  # request id, path ids, the caller once signed in
                        "method": scope.get("method", "?"),
                        "route": scope.get("path_template") or "unmatched",
                        "status": status,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                    },
                )
