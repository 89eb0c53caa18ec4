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

The same run measures two ceilings, with the same load generator, the same clients and the same
database:

5. the bare app (`bare_api`: the list statement behind Litestar and a psycopg pool, as many uvicorn
   workers as the API, no authentication), loaded with list requests only: warm-up and open loop at
   the same offered rate (`ceiling_seconds`), then the same closed loop → `ceiling_max_rps`,
   `ratio_max_rps`;
6. the load generator alone, closed loop against a static responder (`static_server`) →
   `generator_max_rps`; when `ratio_ceiling_generator` nears 1, the ceiling measured the generator,
   not the bare app.

A calibration line comes first.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
from rich.console import Console
from sqlalchemy import text
from sqlalchemy.engine import URL

from remotegpu.core.accounts.users import create_api_token
from remotegpu.core.environments.desired import submit_environment
from remotegpu.core.environments.spec import parse_spec
from remotegpu.core.platform.db import make_engine
from remotegpu.ops.bench.bare_api import LIST_PATH, serve_bare_worker
from remotegpu.ops.bench.calibration import calibrate
from remotegpu.ops.bench.database import bench_database, create_tenant
from remotegpu.ops.bench.load import IMAGE, WORKSPACE, LoadPhase, Target, achieved_rate, generate_load
from remotegpu.ops.bench.report import ordered, percentile, print_figures, ratio
from remotegpu.ops.bench.static_server import serve_static

SEEDED = 200
CLOSED_LOOP_CLIENTS = 50
DB_POOL_SIZE = 20
"""Database connections per API worker, the bare app's as well."""


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
    ceiling_seconds: float = 5.0
    """The bare app's open loop at the offered rate (its closed loop runs `closed_seconds`)."""
    generator_seconds: float = 2.0
    """The load generator's closed loop against the static responder."""


QUICK = ApiBenchConfig(seconds=5.0, closed_seconds=4.0, warmup_seconds=1.0, ceiling_seconds=2.0)


def _seed(url: URL) -> tuple[Target, uuid.UUID]:
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
                        connection,
                        workspace_id=workspace,
                        user_id=user,
                        spec=parse_spec(spec | {"name": f"seed-{i}"}),
                    )
                )
                for i in range(SEEDED)
            ]
            token = create_api_token(connection, user, "bench", None).token
    finally:
        engine.dispose()
    return Target("", token, ids), user


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve(port: int, url: str) -> None:
    """One API worker process (spawned), exactly as `remotegpu api --workers N` runs it."""
    from remotegpu.core.platform.settings import Settings
    from remotegpu.ops.api_server import run_worker

    run_worker(
        Settings(
            database_url=url,
            api_port=port,
            jwt_secret="bench-" + "k" * 40,
            login_attempts_per_minute=100_000,
            db_pool_size=DB_POOL_SIZE,
        )
    )


@dataclass(frozen=True)
class _Server:
    """Processes to spawn for one server on one port, and the path that answers 200 once it serves."""

    target: Callable[..., None]
    args: tuple[Any, ...]
    processes: int
    ready_path: str


@contextlib.contextmanager
def _serving(*servers: _Server) -> Iterator[list[str]]:
    """Start every server's processes at once (each server on a port of its own, its port the first of
    its arguments); yield their base URLs once each answers, and stop them all on exit."""
    context = multiprocessing.get_context("spawn")
    ports = [_free_port() for _ in servers]
    processes = [
        context.Process(target=server.target, args=(port, *server.args), daemon=True)
        for server, port in zip(servers, ports, strict=True)
        for _ in range(server.processes)
    ]
    for process in processes:
        process.start()
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    probes = [base + server.ready_path for base, server in zip(bases, servers, strict=True)]
    deadline = time.monotonic() + 90
    try:
        while probes:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(probes[0], timeout=1).status_code == 200:
                    probes.pop(0)
                    continue
            if not all(p.is_alive() for p in processes) or time.monotonic() > deadline:
                raise RuntimeError(f"a server did not become ready: {probes[0]}")
            time.sleep(0.1)
        time.sleep(1)  # the other workers of each finish starting too
        yield bases
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(timeout=10)


def _load(phases: list[LoadPhase], config: ApiBenchConfig) -> dict[str, Any]:
    """Run `phases` in a load process of their own; their results by phase name."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    loader = context.Process(
        target=generate_load, args=(phases, config.rate, config.warmup_seconds, config.clients, sender)
    )
    loader.start()
    results: dict[str, Any] = receiver.recv()
    loader.join()
    return results


def run(config: ApiBenchConfig, console: Console | None = None) -> dict[str, Any]:
    """Run the benchmark; print the table and return the figures.

    The API and the static responder serve first (the responder holds no database connection), then
    the bare app on its own: the bare app's pools never add to the API's on the shared server.
    """
    console = console or Console()
    with bench_database("remotegpu_bench_api") as url:
        calibration = calibrate(url)
        seeded, user = _seed(url)
        rendered = url.render_as_string(hide_password=False)
        api = _Server(_serve, (rendered,), config.workers, "/readyz")
        static = _Server(serve_static, (), 1, "/")
        with _serving(api, static) as (api_base, static_base):
            results = _load(
                [
                    LoadPhase(
                        "api",
                        replace(seeded, base_url=api_base),
                        "api",
                        config.seconds,
                        config.closed_seconds,
                    ),
                    LoadPhase(
                        "generator",
                        replace(seeded, base_url=static_base),
                        "static",
                        0,
                        config.generator_seconds,
                    ),
                ],
                config,
            )
        bare = _Server(
            serve_bare_worker, (rendered, user, DB_POOL_SIZE), config.workers, f"{LIST_PATH}?limit=1"
        )
        with _serving(bare) as (bare_base,):
            results |= _load(
                [
                    LoadPhase(
                        "bare",
                        replace(seeded, base_url=bare_base),
                        "list",
                        config.ceiling_seconds,
                        config.closed_seconds,
                    )
                ],
                config,
            )
    opened, (closed_done, closed_errors) = results["api"]
    latencies = [latency for _, latency, _, _ in opened]
    open_errors = sum(1 for _, _, status, _ in opened if not 200 <= status < 300)
    max_rps = round(closed_done / config.closed_seconds, 1)
    figures: dict[str, Any] = {
        **_ceilings(results, config, max_rps),
        "offered_rps": config.rate,
        "rps": achieved_rate(opened),
        "p50_ms": round(percentile(latencies, 0.5), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "max_rps": max_rps,
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
    figures.update(calibration)
    print_figures(console, "API benchmark", figures, [])
    return ordered(figures)


def _ceilings(results: dict[str, Any], config: ApiBenchConfig, max_rps: float) -> dict[str, Any]:
    """The bare app's and the generator's figures, and the API's ratio to the bare app's."""
    bare_opened, (bare_done, bare_errors) = results["bare"]
    _, (generator_done, generator_errors) = results["generator"]
    bare_latencies = [latency for _, latency, _, _ in bare_opened]
    ceiling_max_rps = round(bare_done / config.closed_seconds, 1)
    generator_max_rps = round(generator_done / config.generator_seconds, 1)
    return {
        "ceiling_max_rps": ceiling_max_rps,
        "ceiling_rps": achieved_rate(bare_opened),
        "ceiling_p50_ms": round(percentile(bare_latencies, 0.5), 2),
        "ceiling_p99_ms": round(percentile(bare_latencies, 0.99), 2),
        "ratio_max_rps": ratio(max_rps, ceiling_max_rps),
        "ratio_ceiling_generator": ratio(ceiling_max_rps, generator_max_rps),
        "generator_max_rps": generator_max_rps,
        "errors_in_ceilings": bare_errors
        + generator_errors
        + sum(1 for _, _, status, _ in bare_opened if not 200 <= status < 300),
    }


def main(quick: bool, rate: float | None = None, workers: int | None = None) -> None:
    """Entry point for the CLI: table, then the figures as the last line."""
    base = QUICK if quick else ApiBenchConfig()
    config = replace(base, rate=rate or base.rate, workers=workers or base.workers)
    print(json.dumps(run(config)))
