"""`remotegpu bench scheduling`: one scheduling pass over a deep capacity queue.

Seeds `hosts` hosts of 8 GPUs (¾ H100, ¼ A100) and admitted environments across `workspaces`
workspaces (requests of 1, 1, 2, 4 and 8 GPUs, a third of them naming a model, one in ten of higher
priority, half with SSH and Jupyter ports): enough to fill the cluster, and `waiting` more. A first
pass fills the cluster (`fill_pass_ms`: most of it is allocating); about `waiting` remain queued. Then, `passes` times, a few running
environments stop (their claims released, as the reconciler's stop step does) and one pass runs over
what still waits: ordering, fair share, head reservation, backfill, the batches it can allocate, and
every waiting environment's position and reason (`pass_ms_p50`, `pass_ms_max`). `plan_ms_p50` is the
queue's planning alone (`policies.queue.plan_queue`) over the same snapshot.

The pass is `schedule_waiting` as the reconciler calls it, without the reconciler's phase change and
fencing (one statement per batch). The same-run ceiling is the pass's reads alone — the waiting
environments and the host snapshot through raw psycopg, best of three (`ceiling_reads_ms`);
`ratio_pass` is that ceiling as a fraction of the steady pass (1 would be a pass that costs no more than
reading its input). After the run the claim history and counters are audited.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import random
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from rich.console import Console
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from remotegpu.core.capacity import scheduling
from remotegpu.core.capacity.audit import audit
from remotegpu.core.capacity.queue_places import PLACE_HOLDS, PLACES_SQL
from remotegpu.core.capacity.release import release
from remotegpu.core.environments.desired import submit_environment
from remotegpu.core.environments.spec import parse_spec
from remotegpu.core.environments.states import DesiredState, Phase
from remotegpu.core.inventory.sync import GpuDevice, register_host
from remotegpu.core.platform.db import make_engine
from remotegpu.ops.bench.calibration import calibrate
from remotegpu.ops.bench.database import bench_database, create_tenant
from remotegpu.ops.bench.report import ordered, percentile, print_figures, ratio
from remotegpu.policies.queue import plan_queue

GIB = 1 << 30
SIZES = (1, 1, 2, 4, 8)


@dataclass(frozen=True)
class SchedulingBenchConfig:
    """Size of one run."""

    hosts: int = 2000
    waiting: int = 5000
    workspaces: int = 50
    passes: int = 5
    stopped_per_pass: int = 20


QUICK = SchedulingBenchConfig(hosts=200, waiting=500, workspaces=10, passes=3, stopped_per_pass=5)


def _seed(engine: Engine, config: SchedulingBenchConfig) -> None:
    with engine.begin() as connection:
        for index in range(config.hosts):
            model = "H100" if index % 4 else "A100"
            register_host(
                connection,
                f"node-{index:05d}",
                [GpuDevice(model, 80 * GIB) for _ in range(8)],
                cpu_millis=256_000,
                memory_bytes=2048 * GIB,
            )
    tenants = [create_tenant(engine, f"bench-{index}") for index in range(config.workspaces)]
    rng = random.Random(7)
    # enough to fill every host (with some left over by fragmentation), then the queue's depth
    filling = int(config.hosts * 8 / (sum(SIZES) / len(SIZES)) * 1.1)
    with engine.begin() as connection:
        for index in range(filling + config.waiting):
            workspace, user = tenants[rng.randrange(len(tenants))]
            gpus = SIZES[rng.randrange(len(SIZES))]
            wanted: str | None = ("H100", "A100", None)[index % 3]
            spec: dict[str, Any] = {
                "name": f"env-{index}",
                "image": "pytorch:24.05",
                "resources": {
                    "gpus": {"count": gpus, **({"model": wanted} if wanted else {})},
                    "cpu": 4 * gpus,
                    "memory": f"{32 * gpus}Gi",
                },
            }
            if index % 2 == 0:
                spec["access"] = ["ssh", "jupyter"]
            submit_environment(
                connection,
                workspace_id=workspace,
                user_id=user,
                spec=parse_spec(spec),
                priority=1 if index % 10 == 0 else 0,
            )
        # admission is another step of the pass (one statement); here every environment starts admitted
        connection.execute(
            text("UPDATE environments SET phase = :admitted, observed_generation = generation"),
            {"admitted": Phase.ADMITTED.value},
        )
    with engine.connect() as connection:
        connection.execute(text("ANALYZE"))
        connection.commit()


def _stop_some(engine: Engine, count: int, rng: random.Random) -> None:
    """Stop `count` placed environments: release their claims, as the reconciler's stop step does."""
    with engine.connect() as connection:
        placed = list(
            connection.execute(
                text(
                    "SELECT environment_id FROM allocations WHERE released_at IS NULL ORDER BY environment_id"
                )
            ).scalars()
        )
    for environment_id in rng.sample(placed, min(count, len(placed))):
        with engine.begin() as connection:
            release(connection, environment_id)
            connection.execute(
                text("UPDATE environments SET desired_state = :stopped, phase = :stopped WHERE id = :id"),
                {"stopped": DesiredState.STOPPED.value, "id": environment_id},
            )


def _timed_pass(engine: Engine) -> tuple[float, int]:
    started = time.perf_counter()
    report = scheduling.schedule_waiting(engine)
    return (time.perf_counter() - started) * 1000, len(report.allocated)


def _plan_ms(engine: Engine) -> float:
    """`plan_queue` alone over the snapshot the pass reads (its SQL left out)."""
    with engine.begin() as connection:
        rows = connection.execute(scheduling.WAITING_SQL).all()
        hosts, totals = scheduling.host_snapshots(connection)
        running = {ws: int(gpus) for ws, gpus in connection.execute(scheduling.RUNNING_GPUS_SQL)}
    queued = scheduling.queued_requests(rows)
    started = time.perf_counter()
    plan_queue(queued, hosts, totals, running)
    return (time.perf_counter() - started) * 1000


def _ceiling_reads_ms(url: URL) -> float:
    """The pass's two reads through raw psycopg, fetched whole; best of three."""
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    waiting_sql = str(scheduling.WAITING_SQL.compile())
    hosts_sql = str(scheduling.HOSTS_SQL.compile())
    best = float("inf")
    with psycopg.connect(conninfo, autocommit=True) as connection:
        for _ in range(3):
            started = time.perf_counter()
            connection.execute(waiting_sql).fetchall()
            connection.execute(hosts_sql).fetchall()
            best = min(best, (time.perf_counter() - started) * 1000)
    return round(best, 2)


def run(
    quick: bool = False, console: Console | None = None, config: SchedulingBenchConfig | None = None
) -> dict[str, Any]:
    """Run the benchmark, print its table, and return its figures."""
    console = console or Console()
    config = config or (QUICK if quick else SchedulingBenchConfig())
    rng = random.Random(11)
    with bench_database("remotegpu_bench_sched") as url:
        calibration = calibrate(url)
        engine = make_engine(url, pool_size=2, pre_ping=False)
        try:
            _seed(engine, config)
            gc.freeze()  # as `remotegpu reconciler` does after start-up
            fill_ms, filled = _timed_pass(engine)
            passes: list[float] = []
            placed = 0
            for _ in range(config.passes):
                _stop_some(engine, config.stopped_per_pass, rng)
                elapsed, count = _timed_pass(engine)
                passes.append(elapsed)
                placed += count
            plans = [_plan_ms(engine) for _ in range(3)]
            with engine.connect() as connection:
                still_waiting = connection.execute(
                    text(
                        f"SELECT count(*) FROM environments e JOIN ({PLACES_SQL}) qp ON {PLACE_HOLDS}"
                        " WHERE qp.position IS NOT NULL"
                    )
                ).scalar_one()
                violations = audit(connection)
        finally:
            gc.unfreeze()
            engine.dispose()
        ceiling = _ceiling_reads_ms(url)
    pass_p50 = percentile(sorted(passes), 0.5)
    figures = {
        "ceiling_reads_ms": ceiling,
        "ratio_pass": ratio(ceiling, pass_p50),
        "benchmark": "scheduling",
        "quick": quick,
        "hosts": config.hosts,
        "waiting": config.waiting,
        "workspaces": config.workspaces,
        "fill_pass_ms": round(fill_ms, 1),
        "fill_placed": filled,
        "pass_ms_p50": round(pass_p50, 1),
        "pass_ms_max": round(max(passes, default=0.0), 1),
        "placed_per_pass": round(placed / max(1, config.passes), 1),
        "still_waiting": still_waiting,
        "plan_ms_p50": round(percentile(sorted(plans), 0.5), 1),
        "violations": len(violations),
        **calibration,
    }
    print_figures(console, "remotegpu bench scheduling", figures, violations)
    return ordered(figures)


def main(quick: bool, waiting: int | None = None, nodes: int | None = None) -> None:
    """Entry point for the CLI: table, then the figures as the last line."""
    config = QUICK if quick else SchedulingBenchConfig()
    if waiting is not None:
        config = dataclasses.replace(config, waiting=waiting)
    if nodes is not None:
        config = dataclasses.replace(config, hosts=nodes)
    print(json.dumps(run(quick, config=config)))
