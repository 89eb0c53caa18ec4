"""Listening sockets of the servers: bound before a server starts (so port 0, any free port, works), and
a taken address refused before a command starts anything. Only the standard library, so a command can
check its port before importing what it serves."""

from __future__ import annotations

import errno
import socket

from remotegpu.core.platform.errors import RemoteGPUError


def bind(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to host:port (port 0: any free port); `reuse_port` lets several worker
    processes share the port.

    With `reuse_port` the socket is not listening yet: uvicorn starts listening after the app's startup
    hooks (database pools open), and until then the kernel gives this port's new connections to the
    workers already serving. A worker listening from the start would queue connections it cannot serve
    yet (seen as a first second of 100–400 ms latencies in `remotegpu bench api`).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    if not reuse_port:
        sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def check_port_free(host: str, port: int, *, port_flag: str, host_flag: str | None = None) -> None:
    """Refuse an address this process cannot listen on, before anything is started, in one line that
    names the flag or setting choosing another (`port_flag` for a taken port, else `host_flag`)."""
    try:
        bind(host, port).close()
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise RemoteGPUError(
                f"port {port} on {host} is in use: choose another with {port_flag}"
            ) from None
        reason = error.strerror or str(error)
        flag = port_flag if error.errno == errno.EACCES or host_flag is None else host_flag
        raise RemoteGPUError(
            f"cannot listen on {host} port {port} ({reason}): choose another with {flag}"
        ) from None
