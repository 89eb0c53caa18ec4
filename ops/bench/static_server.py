"""The load generator's own ceiling: a server that costs next to nothing per request.

It answers every request with the same small response, straight from an asyncio protocol on uvloop (no
HTTP framework, no parsing beyond finding where each request's headers end), so that the load generator
pointed at it measures itself: when the generator's ceiling is near what it measured of a server, it
was the generator that was saturated, not the server. It imports little, so its process starts quickly.
"""

from __future__ import annotations

import asyncio
from typing import Any

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class _StaticResponder(asyncio.Protocol):
    """Answers each request (a GET: headers only) with `RESPONSE`, keeping the connection."""

    def __init__(self) -> None:
        self._transport: Any = None
        self._buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        requests = self._buffer.count(b"\r\n\r\n")
        if requests:
            self._buffer = self._buffer[self._buffer.rfind(b"\r\n\r\n") + 4 :]
            self._transport.write(RESPONSE * requests)


async def _serve_static(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(_StaticResponder, "127.0.0.1", port, backlog=2048)
    async with server:
        await server.serve_forever()


def serve_static(port: int) -> None:
    """The static server (a spawned process, uvloop); serves until terminated."""
    import uvloop

    uvloop.run(_serve_static(port))
