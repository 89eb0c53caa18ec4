"""What each environment costs at scale, measured around the flood of `bench reconcile`.

The figures that say whether a count of environments can grow: the reconciler's peak memory and CPU
seconds per environment (the replicas run in the benchmark's process, so both are that process's: its
harness only submits and polls), the simulated cluster's CPU over the same time (whether it, not the
reconciler, was the bottleneck), the rows and bytes Postgres gained per environment, and what one run
of each leader job costs with every environment running, per running environment. Measured at
1,000, 3,000 and 10,000, a figure that stays flat is a cost that grows with the count and no faster.
Then the steady state: every environment running, only their resyncs to do (`steady_resyncs`).
"""

from __future__ import annotations

import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import Engine, text

from remotegpu.core.environments.states import Phase
from remotegpu.core.platform.settings import Settings
from remotegpu.reconciler.context import ReconcilerContext
from remotegpu.reconciler.gc import collect_garbage
from remotegpu.reconciler.hosts import sync_host_health
from remotegpu.reconciler.invoicing import invoice_tick
from remotegpu.reconciler.loop import Reconciler
from remotegpu.reconciler.metering import meter_tick
from remotegpu.reconciler.policies import policy_tick

LEADER_JOBS = {
    "host_heartbeats": sync_host_health,
    "garbage_collection": collect_garbage,
    "metering": meter_tick,
    "policies": policy_tick,
    "invoices": invoice_tick,
}
"""The leader's periodic jobs that look at environments (the registry sync reads registries only)."""

_TABLES_SQL = text("SELECT quote_ident(schemaname) || '.' || quote_ident(relname) FROM pg_stat_user_tables")


def process_cpu_s(pid: int | None = None) -> float | None:
    """CPU seconds (user + system) a process has used so far: this one's own when `pid` is None; None
    where `/proc` cannot say."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = 100  # USER_HZ on Linux
    return (int(fields[11]) + int(fields[12])) / ticks


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def database_size(engine: Engine) -> tuple[int, int]:
    """(rows in every table, bytes of the database): exact counts, read once before and once after."""
    with engine.connect() as connection:
        tables = list(connection.execute(_TABLES_SQL).scalars())
        rows = sum(
            int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()) for table in tables
        )
        size = int(connection.execute(text("SELECT pg_database_size(current_database())")).scalar_one())
    return rows, size


@dataclass
class FloodMeter:
    """Started just before the flood is submitted; `figures` once every environment runs."""

    engine: Engine
    sim_pid: int | None = None

    def __post_init__(self) -> None:
        self._rows, self._bytes = database_size(self.engine)
        self._cpu = process_cpu_s() or 0.0
        self._sim_cpu = process_cpu_s(self.sim_pid) if self.sim_pid is not None else None
        self._started = time.monotonic()

    def figures(self, envs: int) -> dict[str, Any]:
        """Per-environment costs of the flood (rows and bytes include its events and claim history)."""
        wall = time.monotonic() - self._started
        cpu = (process_cpu_s() or 0.0) - self._cpu
        rows, size = database_size(self.engine)
        found: dict[str, Any] = {
            "peak_rss_mib": peak_rss_mib(),
            "cpu_ms_per_env": round(cpu * 1000 / envs, 2),
            "reconciler_cpu_share": round(cpu / wall, 2) if wall else 0.0,
            "db_rows_per_env": round((rows - self._rows) / envs, 1),
            "db_bytes_per_env": round((size - self._bytes) / envs),
        }
        if self._sim_cpu is not None:
            sim_cpu = process_cpu_s(self.sim_pid)
            if sim_cpu is not None and wall:
                # cores the simulated cluster used on average: well under 1, it was not the bottleneck
                found["sim_cpu_share"] = round((sim_cpu - self._sim_cpu) / wall, 2)
        return found


def leader_job_costs(ctx: ReconcilerContext, running: int) -> dict[str, float]:
    """Each leader job run once now, on the leader's context, timed: ms per run and µs per running
    environment. (Its scheduled runs go on as well: each job is idempotent and fenced.)"""
    found: dict[str, float] = {}
    total = 0.0
    for name, job in LEADER_JOBS.items():
        started = time.perf_counter()
        job(ctx)
        elapsed = time.perf_counter() - started
        total += elapsed
        found[f"job_{name}_ms"] = round(elapsed * 1000, 1)
    found["jobs_us_per_env"] = round(total * 1e6 / max(1, running), 1)
    return found


STEADY_RESYNC_SECONDS = 1.0
"""The resync period of the steady phase: short, so that resyncs ask more than the workers can do
(1,000 running environments ask 1,000 a second) and the phase measures what they can do."""


def resync_steps(replicas: Sequence[Reconciler]) -> float:
    """Steps every replica made on running environments so far (the resyncs of settled ones, nearly all)."""
    total = 0.0
    for replica in replicas:
        for metric in replica.ctx.metrics.step_duration.collect():
            total += sum(
                sample.value
                for sample in metric.samples
                if sample.name.endswith("_count") and sample.labels.get("phase") == Phase.RUNNING.value
            )
    return total


def steady_resyncs(
    replicas: Sequence[Reconciler], settings: Settings, running: int, seconds: float, sim_pid: int | None
) -> dict[str, float]:
    """Every environment running and nothing else to do: with the resync period made short (hot reload,
    as an operator would), the resyncs a second the replicas achieve against those asked for, and what
    one costs the reconciler's process (and the simulated cluster's, whose reads a resync may spare)."""
    short = msgspec.structs.replace(settings, resync_seconds=STEADY_RESYNC_SECONDS)
    for replica in replicas:
        replica.apply_settings(short)
    try:
        time.sleep(settings.resync_seconds + 1)  # every environment on the short period by now
        steps, cpu, started = resync_steps(replicas), process_cpu_s() or 0.0, time.monotonic()
        sim_cpu = process_cpu_s(sim_pid) if sim_pid is not None else None
        time.sleep(seconds)
        wall = time.monotonic() - started
        done = resync_steps(replicas) - steps
        cpu_used = (process_cpu_s() or 0.0) - cpu
        sim_used = (process_cpu_s(sim_pid) or 0.0) - sim_cpu if sim_cpu is not None else None
    finally:
        for replica in replicas:
            replica.apply_settings(settings)
    found = {
        "steady_resyncs_asked_per_s": round(running / STEADY_RESYNC_SECONDS, 1),
        "steady_resyncs_per_s": round(done / wall, 1),
        "steady_cpu_ms_per_resync": round(cpu_used * 1000 / done, 3) if done else 0.0,
    }
    if sim_used is not None:
        found["steady_sim_cpu_ms_per_resync"] = round(sim_used * 1000 / done, 3) if done else 0.0
    return found
