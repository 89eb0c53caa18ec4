"""What every contract fake shares: its HTTP server on 127.0.0.1, started in a thread on `with` and
stopped (socket closed, thread joined) on leaving it."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


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
