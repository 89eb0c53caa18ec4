"""Serving the API with uvicorn: as worker processes sharing one port (`remotegpu api`, the API
benchmark) or on a thread (`remotegpu dev`, tests), on a socket bound before the server starts so port 0
(any free port) works.

Several workers use the cores a single Python process cannot: each binds the port with SO_REUSEPORT and
the kernel spreads connections over them. Each has its own database pools.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import socket
import threading
import time
from collections.abc import Iterator

import uvicorn
from litestar import Litestar

from remotegpu.core.settings import Settings


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


async def _freeze_startup_objects() -> None:
    """Move everything allocated at start-up (modules, the app, pools) out of the collector's sight, so
    full collections while serving walk only what requests allocate (CPython's advice for servers)."""
    gc.collect()
    gc.freeze()


def _server(app: Litestar) -> uvicorn.Server:
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=2
    )
    return uvicorn.Server(config)


def run_worker(settings: Settings) -> None:
    """One API worker: its engine, its app, uvicorn on a SO_REUSEPORT socket; until interrupted."""
    from remotegpu.api.app import create_app
    from remotegpu.core.db import make_engine
    from remotegpu.core.kubernetes_cluster import KubernetesCluster
    from remotegpu.ops.reconciler_runner import driver_options

    assert settings.database_url is not None, "the caller checked database_url"
    engine = make_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        application_name="remotegpu-api",
        pre_ping=False,
    )
    logs = (
        KubernetesCluster.from_kubeconfig(settings.kubeconfig, **driver_options(settings))
        if settings.kubeconfig
        else None
    )
    sock = bind(settings.api_host, settings.api_port, reuse_port=True)
    app = create_app(settings, engine, logs=logs)
    app.on_startup.append(_freeze_startup_objects)
    _server(app).run(sockets=[sock])


def serve_workers(settings: Settings, workers: int) -> None:
    """Run `workers` API processes on one port until interrupted (one runs in this process)."""
    if workers <= 1:
        run_worker(settings)
        return
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=run_worker, args=(settings,), daemon=True) for _ in range(workers)]
    for process in processes:
        process.start()
    try:
        for process in processes:
            process.join()
    finally:
        for process in processes:
            process.terminate()


@contextlib.contextmanager
def running_api(app: Litestar, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve `app` on a background thread; yields its base URL and stops it on exit."""
    sock = bind(host, port)
    server = _server(app)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="remotegpu-api", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API server did not start")
        time.sleep(0.01)
    bound_host, bound_port = sock.getsockname()[:2]
    try:
        yield f"http://{bound_host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
