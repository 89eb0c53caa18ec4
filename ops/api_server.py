"""Serving the API with uvicorn: as worker processes sharing one port (`remotegpu api`, the API
benchmark) or on a thread (`remotegpu dev`, tests), on a socket bound before the server starts so port 0
(any free port) works.

Several workers use the cores a single Python process cannot: each binds the port with SO_REUSEPORT and
the kernel spreads connections over them. Each has its own database pools. The parent owns its workers:
SIGINT or SIGTERM to it stops every one (they keep serving the port otherwise), and a worker whose parent
dies, even by SIGKILL, stops too.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import multiprocessing.connection
import multiprocessing.context
import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from multiprocessing.process import BaseProcess
from pathlib import Path

import uvicorn
from litestar import Litestar
from rich.console import Console

from remotegpu.api.drain import DrainingServer
from remotegpu.api.request_log import RequestLogMiddleware
from remotegpu.core.platform.errors import RemoteGPUError
from remotegpu.core.platform.settings import Settings
from remotegpu.ops.log_format import configure_logging
from remotegpu.ops.ports import bind
from remotegpu.ops.reload import SettingsReloader
from remotegpu.ops.stopping import StopRequested, die_with_parent, install_stop_handlers

__all__ = ["bind", "run_worker", "running_api", "serve_workers", "stop_processes"]  # bind: from ports


async def _freeze_startup_objects() -> None:
    """Move everything allocated at start-up (modules, the app, pools) out of the collector's sight, so
    full collections while serving walk only what requests allocate (CPython's advice for servers)."""
    gc.collect()
    gc.freeze()


def _server(app: Litestar) -> DrainingServer:
    # The request log wraps the whole app, so even an answer no route gives (404, 405) has its id and line.
    config = uvicorn.Config(
        RequestLogMiddleware(app),
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    return DrainingServer(config, app.state.drain, app.state.drain_seconds)


def run_worker(settings: Settings, config_file: Path | None = None) -> None:
    """One API worker: its engine, its app, uvicorn on a SO_REUSEPORT socket; until interrupted."""
    from remotegpu.api.app import create_app
    from remotegpu.core.cluster.kubernetes.client import in_cluster
    from remotegpu.core.cluster.kubernetes.cluster import KubernetesCluster
    from remotegpu.core.platform.db import make_engine
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
        if settings.kubeconfig or in_cluster()
        else None
    )
    sock = bind(settings.api_host, settings.api_port, reuse_port=True)
    app = create_app(settings, engine, logs=logs)
    app.on_startup.append(_freeze_startup_objects)
    server = _server(app)
    reloader = SettingsReloader(
        settings,
        app.state.live_settings.apply,
        config_file=config_file,
        console=Console(stderr=True),
        default_format=settings.log_format or "json",
        fixed=("api_host", "api_port"),  # `--host`/`--port` may have chosen them
    )
    with reloader.watch():  # SIGHUP: the sign-in limits, CORS origins and log level change in place
        server.run(sockets=[sock])
    if not server.started:
        raise SystemExit("the API worker did not start (see the log above)")


def _worker_process(settings: Settings, parent_pid: int, config_file: Path | None) -> None:
    """A spawned worker's entry: serves until SIGINT or SIGTERM, or until its parent dies."""
    install_stop_handlers()
    configure_logging(settings.log_level, settings.log_format or "json", Console(stderr=True))
    try:
        die_with_parent(parent_pid)
        run_worker(settings, config_file)
    except StopRequested:
        pass


def serve_workers(settings: Settings, workers: int, config_file: Path | None = None) -> None:
    """Run `workers` API processes on one port until SIGINT or SIGTERM (`StopRequested`, with the caller's
    handlers) or until one of them exits, then stop every one; one worker runs in this process."""
    if workers <= 1:
        run_worker(settings, config_file)
        return
    context = multiprocessing.get_context("spawn")
    with _shared_metrics_dir():
        _serve_processes(context, settings, workers, config_file)


@contextlib.contextmanager
def _shared_metrics_dir() -> Iterator[None]:
    """Workers write their metrics to files in one folder, and `/metrics` of any of them adds all up
    (prometheus_client's multiprocess mode): the kernel spreads scrapes over the workers like any request,
    so each worker's own counters alone would jump back and forth. Spawned workers inherit the variable."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        yield  # the operator chose the folder
        return
    with tempfile.TemporaryDirectory(prefix="remotegpu-api-metrics-") as folder:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
        try:
            yield
        finally:
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]


def _serve_processes(
    context: multiprocessing.context.SpawnContext, settings: Settings, workers: int, config_file: Path | None
) -> None:
    processes = [
        context.Process(
            target=_worker_process,
            args=(settings, os.getpid(), config_file),
            name=f"api-worker-{index}",
            daemon=True,
        )
        for index in range(workers)
    ]
    # Workers start ignoring SIGHUP (inherited across exec) until they handle it themselves (a reload);
    # then this process forwards each SIGHUP to every worker.
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        for process in processes:
            process.start()
        signal.signal(signal.SIGHUP, lambda _signum, _frame: _forward(processes, signal.SIGHUP))
        while all(process.is_alive() for process in processes):
            multiprocessing.connection.wait([process.sentinel for process in processes], timeout=1.0)
        ended = next(process for process in processes if not process.is_alive())
        raise RemoteGPUError(f"{ended.name} exited with status {ended.exitcode}; stopped the other workers")
    finally:
        signal.signal(signal.SIGHUP, previous)
        stop_processes(processes, grace_s=settings.drain_seconds + 5)  # each drains first


def _forward(processes: Sequence[BaseProcess], signum: int) -> None:
    for process in processes:
        if process.pid is not None and process.is_alive():
            os.kill(process.pid, signum)


def stop_processes(processes: Sequence[BaseProcess], grace_s: float = 10.0) -> None:
    """SIGTERM every started process, wait up to `grace_s` for them all, then SIGKILL what is left."""
    started = [process for process in processes if process.pid is not None]
    for process in started:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + grace_s
    for process in started:
        process.join(timeout=max(0.0, deadline - time.monotonic()))
    for process in started:
        if process.is_alive():
            process.kill()
            process.join()


@contextlib.contextmanager
def running_api(app: Litestar, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve `app` on a background thread; yields its base URL and stops it on exit."""
    with running_api_server(app, host, port) as (url, _):
        yield url


@contextlib.contextmanager
def running_api_server(
    app: Litestar, host: str = "127.0.0.1", port: int = 0
) -> Iterator[tuple[str, DrainingServer]]:
    """`running_api`, also yielding the server (tests drain it)."""
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
        yield f"http://{bound_host}:{bound_port}", server
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
