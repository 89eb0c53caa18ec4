"""Draining an API process before it stops: requests in flight finish, new ones are refused.

On SIGTERM or SIGINT (`DrainingServer`) the process stops taking work but keeps its sockets: every new
request — `/readyz` included, so a load balancer takes the process out — gets 503 with `Retry-After` and
`Connection: close`, while the requests already running finish, for up to `drain_seconds`. Then uvicorn's
own shutdown runs. A second signal stops at once.
"""

from __future__ import annotations

import json
import time
from types import FrameType

import uvicorn
from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPResponseStartEvent, Receive, Scope, Send

from remotegpu.core.platform.log_context import log_field

RETRY_AFTER_SECONDS = 2


class Drain:
    """Whether this process drains, and how many requests it is still answering (event loop only)."""

    def __init__(self) -> None:
        self.draining = False
        self.in_flight = 0

    def start(self) -> None:
        self.draining = True


class DrainMiddleware:
    """ASGI middleware: count requests in flight; while draining, refuse new ones with 503."""

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        if self.drain.draining:
            await _refuse(scope, send)
            return
        self.drain.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.drain.in_flight -= 1


async def _refuse(scope: Scope, send: Send) -> None:
    body = {
        "type": "about:blank",
        "title": "Service Unavailable",
        "status": 503,
        "detail": f"this API process is shutting down; retry in {RETRY_AFTER_SECONDS} seconds",
        "instance": scope.get("path", ""),
    }
    request_id = log_field("request_id")
    if request_id is not None:
        body["request_id"] = request_id
    encoded = json.dumps(body).encode()
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": 503,
        "headers": [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(encoded)).encode()),
            (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
            (b"connection", b"close"),
        ],
    }
    await send(start)
    await send({"type": "http.response.body", "body": encoded, "more_body": False})


class DrainingServer(uvicorn.Server):
    """uvicorn whose first stop signal drains (see the module) before the usual shutdown."""

    def __init__(self, config: uvicorn.Config, drain: Drain, drain_seconds: float) -> None:
        super().__init__(config)
        self.drain = drain
        self.drain_seconds = drain_seconds
        self._drain_until = 0.0

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain.draining or self.should_exit:
            super().handle_exit(sig, frame)  # a second signal: stop now
            return
        self.begin_drain()

    def begin_drain(self) -> None:
        """Refuse new requests from now on; stop once those in flight are answered (or the time is up)."""
        self._drain_until = time.monotonic() + self.drain_seconds
        self.drain.start()

    async def on_tick(self, counter: int) -> bool:
        drained = self.drain.in_flight == 0 or time.monotonic() >= self._drain_until
        if self.drain.draining and not self.should_exit and drained:
            self.should_exit = True
        return await super().on_tick(counter)
