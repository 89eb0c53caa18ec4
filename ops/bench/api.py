"""`remotegpu bench api`: the API's throughput and latency, served by one process, loaded from another.

1. A fresh database with one workspace, its owner (signing in with an API token, as the CLI does) and
   `SEEDED` environments.
2. The API in a process of its own (uvicorn with uvloop and httptools, as deployed).
3. A load process (aiohttp on uvloop) offers requests at a fixed rate, open loop: each request has a
   scheduled start, and its latency counts from that schedule, so a server that falls behind is charged
   for the queue it causes (no coordinated omission). The mix: 60 % list (`GET /environments?limit=20`),
   30 % get (`GET /environments/{id}`), 10 % create (`POST /environments`). A warm-up at the same rate
   (2 s; 1 s with `--quick`) comes first and is not counted.
4. The same process then runs 50 closed-loop clients as fast as they can, for the maximum throughput.

Figures: `rps` achieved at the offered rate, `p50_ms` and `p99_ms` there, `errors` (non-2xx or failed
requests in either phase), `max_rps`, and per-kind percentiles.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import json
import multiprocessing
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe
from typing import Any

import httpx
from rich.console import Console
from sqlalchemy import text
from sqlalchemy.engine import URL

from remotegpu.core.accounts import create_api_token
from remotegpu.core.db import make_engine
from remotegpu.core.environments import submit_environment
from remotegpu.ops.bench.database import bench_database, create_tenant
from remotegpu.ops.bench.report import percentile, print_figures

SEEDED = 200
WORKSPACE = "bench"
CLOSED_LOOP_CLIENTS = 50
IMAGE = "nvcr.io/nvidia/pytorch:24.05-py3"


@dataclass(frozen=True)
class ApiBenchConfig:
    """How hard and how long to push."""

    rate: float = 1000.0
    seconds: float = 20.0
    closed_seconds: float = 10.0
    clients: int = CLOSED_LOOP_CLIENTS
    workers: int = 2
    """API worker processes (one per core of the development machine)."""
    warmup_seconds: float = 2.0
    """Load at the offered rate before the measured open loop (not counted)."""


@dataclass(frozen=True)
class Target:
    """What the load process needs to know."""

    base_url: str
    token: str
    environment_ids: list[str]


def _seed(url: URL) -> Target:
    engine = make_engine(url, pool_size=2)
    try:
        workspace, user = create_tenant(engine, WORKSPACE)
        with engine.begin() as connection:
            connection.execute(
                text("INSERT INTO workspace_members (workspace_id, user_id, role) VALUES (:w, :u, 'owner')"),
                {"w": workspace, "u": user},
            )
            spec = {"image": IMAGE, "resources": {"gpus": {"count": 1, "model": "H100"}}}
            ids = [
                str(
                    submit_environment(
                        connection, workspace_id=workspace, user_id=user, name=f"seed-{i}", spec=spec
                    )
                )
                for i in range(SEEDED)
            ]
            token = create_api_token(connection, user, "bench", None).token
    finally:
        engine.dispose()
    return Target("", token, ids)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve(url: str, port: int) -> None:
    """One API worker process (spawned), exactly as `remotegpu api --workers N` runs it."""
    from remotegpu.core.settings import Settings
    from remotegpu.ops.api_server import run_worker

    run_worker(
        Settings(
            database_url=url,
            api_port=port,
            jwt_secret="bench-" + "k" * 40,
            login_attempts_per_minute=100_000,
            db_pool_size=20,
        )
    )


@contextlib.contextmanager
def _api_processes(url: URL, workers: int) -> Iterator[str]:
    port = _free_port()
    context = multiprocessing.get_context("spawn")
    rendered = url.render_as_string(hide_password=False)
    processes = [context.Process(target=_serve, args=(rendered, port), daemon=True) for _ in range(workers)]
    for process in processes:
        process.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            if not all(p.is_alive() for p in processes) or time.monotonic() > deadline:
                raise RuntimeError("the API processes did not become ready")
            time.sleep(0.1)
        time.sleep(1)  # the other workers finish starting too
        yield base
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(timeout=10)


# -- the load process ---------------------------------------------------------------------------


def _kind(index: int) -> str:
    slot = index % 10
    return "list" if slot < 6 else "get" if slot < 9 else "create"


async def _one(session: Any, target: Target, kind: str, index: int, tag: str) -> tuple[str, int]:
    base = f"{target.base_url}/api/v1/environments"
    if kind == "list":
        request = session.get(base, params={"limit": "20"})
    elif kind == "get":
        request = session.get(f"{base}/{target.environment_ids[index % len(target.environment_ids)]}")
    else:
        body = {"name": f"b-{tag}-{index}", "workspace": WORKSPACE, "image": IMAGE, "resources": {"gpus": 1}}
        request = session.post(base, json=body)
    try:
        async with request as response:
            await response.read()
            return kind, response.status
    except Exception:  # any failure of the request itself counts as an error
        return kind, 0


async def _open_loop(
    target: Target, rate: float, seconds: float, warmup_seconds: float
) -> list[tuple[str, float, int, float]]:
    """Every request's (kind, latency from its scheduled start in ms, status, completion time). Times
    come from `perf_counter`: uvloop's clock ticks in whole milliseconds. A warm-up at the same rate
    comes first and is not counted: it opens the client's connections and takes both sides through
    their first-request paths."""
    import aiohttp

    headers = {"Authorization": f"Bearer {target.token}"}
    connector = aiohttp.TCPConnector(limit=1000)
    tag = uuid.uuid4().hex[:6]
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
        await _paced(session, target, rate, warmup_seconds, f"{tag}w")
        return await _paced(session, target, rate, seconds, tag)


async def _paced(
    session: Any, target: Target, rate: float, seconds: float, tag: str
) -> list[tuple[str, float, int, float]]:
    results: list[tuple[str, float, int, float]] = []

    async def timed(index: int, scheduled: float) -> None:
        kind, status = await _one(session, target, _kind(index), index, tag)
        done = time.perf_counter()
        results.append((kind, (done - scheduled) * 1000, status, done))

    total = int(rate * seconds)
    start = time.perf_counter() + 0.05
    tasks = []
    for index in range(total):
        scheduled = start + index / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(timed(index, scheduled)))
    await asyncio.gather(*tasks)
    return results


async def _closed_loop(target: Target, clients: int, seconds: float) -> tuple[int, int]:
    import aiohttp

    headers = {"Authorization": f"Bearer {target.token}"}
    done = errors = 0
    tag = uuid.uuid4().hex[:6]
    async with aiohttp.ClientSession(
        headers=headers, connector=aiohttp.TCPConnector(limit=clients)
    ) as session:
        loop = asyncio.get_running_loop()
        stop_at = loop.time() + seconds

        async def client(number: int) -> None:
            nonlocal done, errors
            index = number
            while loop.time() < stop_at:
                _, status = await _one(session, target, _kind(index), index, f"{tag}c")
                done += 1
                errors += not 200 <= status < 300
                index += clients

        await asyncio.gather(*(client(n) for n in range(clients)))
    return done, errors


def _load(target: Target, config: ApiBenchConfig, pipe: Pipe) -> None:
    """The load process (spawned): the open-loop phase, then the closed-loop phase.

    The collector is off during the open loop: a full collection over tens of thousands of pending
    requests pauses the load process for tens of milliseconds, which the open loop would charge to the
    server.
    """
    import uvloop

    gc.disable()

    opened = uvloop.run(_open_loop(target, config.rate, config.seconds, config.warmup_seconds))
    gc.enable()  # the closed loop keeps no per-request state
    gc.collect()
    closed = uvloop.run(_closed_loop(target, config.clients, config.closed_seconds))
    pipe.send((opened, closed))
    pipe.close()


def run(config: ApiBenchConfig, console: Console | None = None) -> dict[str, Any]:
    """Run the benchmark; print the table and return the figures."""
    console = console or Console()
    with bench_database("remotegpu_bench_api") as url:
        seeded = _seed(url)
        with _api_processes(url, config.workers) as base:
            target = Target(base, seeded.token, seeded.environment_ids)
            context = multiprocessing.get_context("spawn")
            receiver, sender = context.Pipe(duplex=False)
            loader = context.Process(target=_load, args=(target, config, sender))
            loader.start()
            opened, (closed_done, closed_errors) = receiver.recv()
            loader.join()
    latencies = [latency for _, latency, _, _ in opened]
    open_errors = sum(1 for _, _, status, _ in opened if not 200 <= status < 300)
    figures: dict[str, Any] = {
        "offered_rps": config.rate,
        "rps": achieved_rate(opened),
        "p50_ms": round(percentile(latencies, 0.5), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "max_rps": round(closed_done / config.closed_seconds, 1),
        "errors": open_errors + closed_errors,
        "requests": len(opened) + closed_done,
        "seconds": config.seconds,
        "closed_loop_clients": config.clients,
        "api_workers": config.workers,
    }
    for kind in ("list", "get", "create"):
        samples = [latency for k, latency, _, _ in opened if k == kind]
        figures[f"{kind}_p50_ms"] = round(percentile(samples, 0.5), 2)
        figures[f"{kind}_p99_ms"] = round(percentile(samples, 0.99), 2)
    print_figures(console, "API benchmark", figures, [])
    return figures


def achieved_rate(opened: list[tuple[str, float, int, float]]) -> float:
    """The rate successful responses came back at, between the 1st and the 99th percentile of their
    completion times: the offered rate for a server that keeps up (its latency shifts both ends alike),
    its own pace for one that falls behind; the trimmed ends keep one slow last response from counting
    as a slower rate."""
    done = sorted(at for _, _, status, at in opened if 200 <= status < 300)
    trim = len(done) // 100
    if len(done) - 2 * trim < 2:
        return 0.0
    first, last = done[trim], done[len(done) - trim - 1]
    return round((len(done) - 2 * trim - 1) / (last - first), 1)


def main(quick: bool, rate: float | None = None, workers: int | None = None) -> None:
    """Entry point for the CLI: table, then the figures as the last line."""
    base = ApiBenchConfig(seconds=5.0, closed_seconds=4.0, warmup_seconds=1.0) if quick else ApiBenchConfig()
    config = dataclasses.replace(base, rate=rate or base.rate, workers=workers or base.workers)
    print(json.dumps(run(config)))
