"""What every contract fake shares: its HTTP server on 127.0.0.1, started in a thread on `with` and
stopped (socket closed, thread joined) on leaving it, and the request handler that hands every request
to the fake's `handle(method, target, headers, body)` and writes the `Answer` it returns."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, Self


class Answer(Protocol):
    """What a fake's `handle` returns (None instead: close the connection unanswered)."""

    status: int
    body: bytes
    content_type: str
    headers: dict[str, str]


class RoutedHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive, every method routed to the server's `handle` (the fake's)."""

    protocol_version = "HTTP/1.1"
    content_type_when_empty = True
    """Whether an answer without a body still names its content type (products differ)."""

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in two writes; without this, Nagle and delayed ACKs add 40 ms a call.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def product_headers(self, answer: Answer) -> dict[str, str]:
        """Headers the product adds to some answers by itself (none by default)."""
        return {}

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        handle: Callable[[str, str, dict[str, str], bytes], Answer | None] = self.server.handle  # type: ignore[attr-defined]
        answer = handle(self.command, self.path, headers, body)
        if answer is None:
            self.close_connection = True
            return
        self.send_response(answer.status)
        for name, value in self.product_headers(answer).items():
            self.send_header(name, value)
        if answer.body or self.content_type_when_empty:
            self.send_header("Content-Type", answer.content_type)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _answer  # noqa: N815 (http.server's names)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: tests and `remotegpu dev` keep their output to themselves."""


class ServedFake:
    """Base of the fakes: `_serve` in `__init__`, then `with fake:` serves at `fake.url`."""

    _server: ThreadingHTTPServer
    _thread: threading.Thread | None = None
    _base_path: str = ""

    def _serve(self, handler: type[BaseHTTPRequestHandler], port: int, **server_attributes: Any) -> None:
        """Bind the server (port 0: a free one); the handler reaches the fake through the attributes."""
        self._server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._server.daemon_threads = True
        for name, value in server_attributes.items():
            setattr(self._server, name, value)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{self._base_path}"

    def __enter__(self) -> Self:
        # A short poll interval: `shutdown()` waits up to one interval, and tests start one server each.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-{type(self).__name__.removeprefix('Fake').lower()}",
            daemon=True,
        )
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
