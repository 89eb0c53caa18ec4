"""Serving the API: worker sockets join the shared port only when their server is ready."""

from __future__ import annotations

import socket

import pytest

from remotegpu.ops.api_server import bind


def test_a_worker_socket_takes_connections_only_once_its_server_listens() -> None:
    sock = bind("127.0.0.1", 0, reuse_port=True)
    try:
        port = sock.getsockname()[1]
        with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=2):
            pass  # a starting worker must not queue connections it cannot serve yet
        sock.listen()
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
    finally:
        sock.close()


def test_a_single_server_socket_listens_at_once() -> None:
    sock = bind("127.0.0.1", 0)
    try:
        with socket.create_connection(("127.0.0.1", sock.getsockname()[1]), timeout=2):
            pass
    finally:
        sock.close()
