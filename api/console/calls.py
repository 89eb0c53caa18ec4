"""Calling a REST route's own handler function from a console page, and streaming fragments."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import anyio.to_thread
from litestar.handlers import HTTPRouteHandler
from litestar.response import ServerSentEvent
from litestar.response.sse import ServerSentEventMessage

from remotegpu.core.platform.errors import RemoteGPUError

Fragments = Callable[[], Awaitable[dict[str, str]]]
"""What a live page pushes: its parts' HTML by element id."""


async def call(route: HTTPRouteHandler, /, **arguments: Any) -> Any:
    """What the REST `route` answers to `arguments` (the browser's request among them): the route's own
    function runs, with its authentication and authorization, so the console never decides access."""
    function = route.fn
    if inspect.iscoroutinefunction(function):
        return await function(**arguments)
    return await anyio.to_thread.run_sync(functools.partial(function, **arguments))


def digest(html: str) -> str:
    """A short fingerprint of a part's HTML."""
    return hashlib.sha256(html.encode()).hexdigest()[:16]


def live_url(path: str, parts: dict[str, str], **query: str | None) -> str:
    """The stream URL of a page that already shows `parts`: it names their fingerprints (`seen`), so the
    stream sends a part only once it differs from what the page shows (no swap under the reader's cursor
    right after the page loads)."""
    seen = ",".join(f"{target}:{digest(html)}" for target, html in parts.items())
    given = {key: value for key, value in query.items() if value}
    return f"{path}?{urlencode({**given, 'seen': seen})}"


def _seen(value: str | None) -> dict[str, str]:
    pairs = (item.partition(":") for item in (value or "").split(",") if item)
    return {target: fingerprint for target, _, fingerprint in pairs}


async def live(fragments: Fragments, *, every_s: float = 1.0, seen: str | None = None) -> ServerSentEvent:
    """Server-sent events: a `swap` event (`{"target": id, "html": …}`) for each part whenever its HTML
    changes (from what the page showed: `seen`, see `live_url`), polled every `every_s`; an `ended` event,
    and the stream closes, when the caller may no longer see it (signed out, deleted). The first look
    happens before the answer starts, so a caller who may not look at all gets the route's error
    instead of a stream."""
    first = await fragments()

    async def messages() -> AsyncIterator[ServerSentEventMessage]:
        sent = _seen(seen)
        current: dict[str, str] | None = first
        while True:
            try:
                current = current if current is not None else await fragments()
            except RemoteGPUError as error:
                yield ServerSentEventMessage(event="ended", data=str(error))
                return
            for target, html in current.items():
                if sent.get(target) != digest(html):
                    sent[target] = digest(html)
                    yield ServerSentEventMessage(
                        event="swap", data=json.dumps({"target": target, "html": html})
                    )
            current = None
            await asyncio.sleep(every_s)

    return ServerSentEvent(messages(), headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
