"""`remotegpu bench billing`: meter ticks over many running environments with volumes.

Seeds N running environments (1–4 H100 each, 4 cores and 32 GiB per GPU, one 100 GiB volume) in bulk,
straight into the database: each has the four meters the reconciler opens when it observes it running
(GPU, CPU, memory; storage for its volume), all started at one moment. Prices are set for every resource,
and the GPU price changes in the middle of the third tick, so that tick cuts every GPU meter it closes in
two; the second tick crosses a month boundary. Then the leader's tick (`reconciler.metering.meter_tick`)
runs on a frozen clock, five minutes apart (the default `meter_seconds`), each timed whole: the read of
the due meters and the price book, the plan, and the fenced writes.

First as deployed (`Settings()`: each running meter closes every `meter_close_seconds`, 30 minutes, at a
moment of its own): six ticks, one close period, so every meter closes once → `tick_ms_p50`,
`tick_ms_max`, `closed_per_tick`. Then every meter at every tick (`meter_close_seconds` 0, which is also
what a tick costs after a mass stop): three ticks → `full_tick_ms_p50` and `intervals_per_s`.
Afterwards the billing audit recomputes everything: each finding is a violation.

The same-run ceiling: one bare INSERT of as many interval rows as a full tick writes, through raw
psycopg with one array per column and `unnest`, into a copy of `billing_intervals` with its indexes and
checks (no foreign keys, no cursor moves, no fencing, no Python arithmetic) → `ceiling_intervals_per_s`;
`ratio_intervals` = the full ticks' intervals/s ÷ ceiling.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
from rich.console import Console
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import URL

from remotegpu.core.billing.audit import audit_billing
from remotegpu.core.cluster.memory import InMemoryCluster
from remotegpu.core.platform import clock
from remotegpu.core.platform.db import make_engine
from remotegpu.core.platform.settings import Settings
from remotegpu.ops.bench.calibration import calibrate
from remotegpu.ops.bench.database import bench_database, create_tenant
from remotegpu.ops.bench.report import ordered, percentile, print_figures, ratio
from remotegpu.reconciler.context import ReconcilerContext
from remotegpu.reconciler.leader import LeaderElector
from remotegpu.reconciler.metering import meter_tick

START = dt.datetime(2026, 11, 30, 23, 52, tzinfo=dt.UTC)
"""Eight minutes before a month boundary: the second tick also cuts every meter at it."""
TICK = dt.timedelta(minutes=5)
PRICES = {
    ("gpu", "H100"): "2.49",
    ("cpu", None): "0.02",
    ("memory", None): "0.005",
    ("storage", None): "0.10",
}
GPU_PRICE_CHANGE = ("3.10", START + 2 * TICK + TICK / 2)


@dataclass(frozen=True)
class BillingBenchConfig:
    """Size of one run."""

    envs: int = 10_000
    ticks: int = 6
    """Ticks as deployed: six, five minutes apart, is one default close period."""
    full_ticks: int = 3


QUICK = BillingBenchConfig(envs=1_000)

_SEED_ENVIRONMENTS_SQL = text(
    """
    INSERT INTO environments (workspace_id, user_id, name, spec, gpu_count, gpu_model, cpu_millis, memory_bytes,
                              storage_bytes, phase)
    SELECT :workspace, :user, 'bench-' || i, '{}', 1 + i % 4, 'H100', 4000 * (1 + i % 4),
           (1 + i % 4) * 34359738368, 107374182400, 'running'
      FROM generate_series(1, :envs) AS i
    """
)
_SEED_METERS_SQL = text(
    """
    INSERT INTO meters (environment_id, workspace_id, user_id, resource, subject, gpu_model, quantity,
                        started_at, metered_until)
    SELECT e.id, e.workspace_id, e.user_id, r.resource, r.subject, r.model, r.quantity, :start, :start
      FROM environments e
     CROSS JOIN LATERAL (VALUES ('gpu', '', e.gpu_model, CAST(e.gpu_count AS numeric)),
                                ('cpu', '', NULL, e.cpu_millis / 1000.0),
                                ('memory', '', NULL, e.memory_bytes / 1073741824.0),
                                ('storage', 'data', NULL, e.storage_bytes / 1073741824.0))
           AS r(resource, subject, model, quantity)
     WHERE e.workspace_id = :workspace
    """
)


def seed(engine: Engine, envs: int, start: dt.datetime) -> tuple[uuid.UUID, uuid.UUID]:
    """`envs` running environments of one tenant, with their four meters open since `start`, and the
    prices (the GPU's changing mid-run); returns (workspace, user)."""
    workspace, user = create_tenant(engine, f"billing{uuid.uuid4().hex[:8]}")
    with engine.begin() as connection:
        connection.execute(_SEED_ENVIRONMENTS_SQL, {"workspace": workspace, "user": user, "envs": envs})
        connection.execute(_SEED_METERS_SQL, {"workspace": workspace, "start": start})
        set_prices(connection, PRICES, start - dt.timedelta(days=1))
        set_prices(connection, {("gpu", "H100"): GPU_PRICE_CHANGE[0]}, GPU_PRICE_CHANGE[1])
    with engine.connect() as connection:
        # fresh tables have no statistics yet; autovacuum would gather them within a minute in production
        connection.execute(text("ANALYZE"))
        connection.commit()
    return workspace, user


def set_prices(connection: Connection, prices: dict[tuple[str, str | None], str], since: dt.datetime) -> None:
    """Prices effective from `since` (as `PUT /billing/prices` stores them)."""
    for (resource, model), price in prices.items():
        connection.execute(
            text(
                "INSERT INTO prices (resource, gpu_model, unit_price, effective_from) VALUES (:r, :m, :p, :t)"
            ),
            {"r": resource, "m": model, "p": Decimal(price), "t": since},
        )


@dataclass
class Ticks:
    """The wall time (seconds) of each tick of one phase, and what they did."""

    times: list[float]
    closed: int
    intervals: int


def _tick_phases(url: URL, engine: Engine, config: BillingBenchConfig) -> tuple[Ticks, Ticks]:
    """As the leader of shard 0: the ticks as deployed, then those closing every meter."""
    elector = LeaderElector(url, identity="bench-billing")
    try:
        if not elector.campaign() or elector.epoch is None:
            raise RuntimeError("the benchmark could not lead shard 0 of its own database")
        phases = []
        with clock.frozen_at(START) as advance:
            for settings, ticks in (
                (Settings(), config.ticks),
                (Settings(meter_close_seconds=0), config.full_ticks),
            ):
                ctx = ReconcilerContext(
                    engine, InMemoryCluster(), settings, "bench-billing", epoch=elector.epoch
                )
                phase = Ticks([], 0, 0)
                for _ in range(ticks):
                    advance(TICK)
                    started = time.perf_counter()
                    report = meter_tick(ctx)
                    phase.times.append(time.perf_counter() - started)
                    phase.closed += report.advanced
                    phase.intervals += report.intervals
                phases.append(phase)
        return phases[0], phases[1]
    finally:
        elector.close()


_BARE_TABLE = "bench_bare_intervals"


def bare_insert_rows_per_s(url: URL, rows: int) -> float:
    """Rows per second of one bare INSERT … SELECT FROM unnest of `rows` interval rows (best of three)."""
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    now = dt.datetime.now(dt.UTC)
    ids = [uuid.uuid4() for _ in range(rows)]
    columns = (
        ids,
        [uuid.uuid4() for _ in range(rows)],
        ["gpu"] * rows,
        [Decimal(2)] * rows,
        ["gpu_hour"] * rows,
        [now] * rows,
        [now + TICK] * rows,
        [Decimal("2.49")] * rows,
        [Decimal("0.415000000000")] * rows,
    )
    best = float("inf")
    with psycopg.connect(conninfo, autocommit=True) as connection:
        for _ in range(3):
            connection.execute(f"DROP TABLE IF EXISTS {_BARE_TABLE}")
            connection.execute(f"CREATE TABLE {_BARE_TABLE} (LIKE billing_intervals INCLUDING ALL)")
            started = time.perf_counter()
            connection.execute(
                f"INSERT INTO {_BARE_TABLE} (meter_id, environment_id, workspace_id, user_id, resource,"
                " quantity, unit, started_at, ended_at, currency, unit_price, amount)"
                " SELECT m, e, e, e, r, q, u, s, x, 'USD', p, a FROM unnest(%s::uuid[], %s::uuid[], %s::text[],"
                " %s::numeric[], %s::text[], %s::timestamptz[], %s::timestamptz[], %s::numeric[], %s::numeric[])"
                " AS v(m, e, r, q, u, s, x, p, a)",
                columns,
            )
            best = min(best, time.perf_counter() - started)
        connection.execute(f"DROP TABLE {_BARE_TABLE}")
    return round(rows / best, 1)


def run(
    quick: bool = False,
    envs: int | None = None,
    console: Console | None = None,
    config: BillingBenchConfig | None = None,
) -> dict[str, Any]:
    """Run the benchmark, print its table, and return its figures."""
    console = console or Console()
    config = config or (QUICK if quick else BillingBenchConfig())
    if envs is not None:
        config = dataclasses.replace(config, envs=envs)
    with bench_database("remotegpu_bench_billing") as url:
        calibration = calibrate(url)
        engine = make_engine(url, pool_size=2, application_name="remotegpu-bench")
        try:
            seed(engine, config.envs, START)
            staggered, full = _tick_phases(url, engine, config)
            with engine.connect() as connection:
                violations = audit_billing(connection, "month", "USD")
                meters = connection.execute(text("SELECT count(*) FROM meters")).scalar_one()
        finally:
            engine.dispose()
        ceiling = bare_insert_rows_per_s(url, full.intervals // max(1, config.full_ticks))
    full_wall = sum(full.times)
    intervals_per_s = round(full.intervals / full_wall, 1) if full_wall > 0 else 0.0
    figures = {
        "ceiling_intervals_per_s": ceiling,
        "ratio_intervals": ratio(intervals_per_s, ceiling),
        "benchmark": "billing",
        "quick": quick,
        "envs": config.envs,
        "meters": meters,
        "ticks": config.ticks,
        "closed_per_tick": round(staggered.closed / max(1, config.ticks), 1),
        "intervals": staggered.intervals + full.intervals,
        "tick_ms_p50": _ms(percentile(sorted(staggered.times), 0.50)),
        "tick_ms_max": _ms(max(staggered.times, default=0.0)),
        "full_tick_ms_p50": _ms(percentile(sorted(full.times), 0.50)),
        "intervals_per_s": intervals_per_s,
        "violations": len(violations),
        **calibration,
    }
    print_figures(console, "remotegpu bench billing", figures, violations)
    return ordered(figures)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def main(quick: bool, envs: int | None = None) -> None:
    """Entry point for the CLI: table, then the figures as the last line."""
    figures = run(quick, envs)
    print(json.dumps(figures))
