"""`remotegpu bench shards`: converge rate with one reconciler process leading both shards, then with
two processes leading one shard each.

Each round has a fresh database, the simulated cluster in a process of its own and real `remotegpu
reconciler` processes (two leaders in one Python process would share one interpreter lock), with
`reconciler_shards = 2`. Once every shard has its leader (both in one process, or one in each), N
environments are submitted at once and timed until every one runs (the database's `submitted_at` to
the `Running` event). Figures per round: envs/s, submit→running p50 and p99; then
`ratio_two_leaders` = envs/s with two leading processes ÷ envs/s with one, in the same run. On a
machine with fewer cores than processes (reconcilers, Postgres, the cluster) the ratio says what a
second process costs there, not what a second machine gains.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from remotegpu.core.capacity.audit import audit
from remotegpu.core.cluster.kubernetes.cluster import KubernetesCluster
from remotegpu.core.inventory.sync import sync_inventory
from remotegpu.core.platform.db import make_engine
from remotegpu.ops.bench.calibration import calibrate
from remotegpu.ops.bench.database import bench_database, create_tenant
from remotegpu.ops.bench.reconcile import (
    _latencies_ms,
    _simulated_cluster_process,
    _submit,
    _wait_running,
)
from remotegpu.ops.bench.report import ordered, percentile, print_figures, ratio
from remotegpu.ops.chaos.stack import Managed

SHARDS = 2


def _leaders(engine: Engine) -> dict[int, str]:
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT shard, leader_id FROM shard_leaders WHERE shard < :n"), {"n": SHARDS}
        )
        return {int(row.shard): str(row.leader_id) for row in rows}


def _round(url: URL, processes: int, envs: int, folder: Path, violations: list[str]) -> dict[str, float]:
    """One round with `processes` reconciler processes; its figures, suffixed by the caller."""
    engine = make_engine(url, pool_size=2)
    with contextlib.ExitStack() as stack:
        stack.callback(engine.dispose)
        kubeconfig, _ = stack.enter_context(
            _simulated_cluster_process(envs // 8 + 4, folder / f"kubeconfig-{processes}")
        )
        with engine.begin() as connection:
            sync_inventory(connection, KubernetesCluster.from_kubeconfig(str(kubeconfig)).list_nodes())
        workspace, user = create_tenant(engine, "bench")
        environment = {
            **{k: v for k, v in os.environ.items() if not k.startswith("REMOTEGPU_") and k != "DATABASE_URL"},
            "DATABASE_URL": url.render_as_string(hide_password=False),
            "REMOTEGPU_RECONCILER_SHARDS": str(SHARDS),
            "REMOTEGPU_RECONCILER_METRICS_PORT": "0",
            "REMOTEGPU_HEARTBEAT_SECONDS": "0.5",
        }
        replicas = [
            Managed(
                f"shards-{index}",
                ["reconciler", "--identity", f"shards-{index}", "--kubeconfig", str(kubeconfig)],
                folder / f"reconciler-{processes}-{index}.log",
            )
            for index in range(processes)
        ]
        for replica in replicas:
            replica.start(environment)
            stack.callback(replica.stop)
        deadline = time.monotonic() + 60
        while len(set(_leaders(engine).values())) < processes or len(_leaders(engine)) < SHARDS:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the shards did not get {processes} leading processes; see {folder}")
            time.sleep(0.1)
        started = time.monotonic()
        flood = _submit(engine, workspace, user, [f"env-{i}" for i in range(envs)])
        if not _wait_running(engine, flood, 600):
            violations.append(f"{processes} process(es): not every environment ran within 600 s")
        elapsed = time.monotonic() - started
        latencies = _latencies_ms(engine, flood)
        with engine.connect() as connection:
            violations += [f"{processes} process(es): {finding}" for finding in audit(connection)]
        return {
            "envs_per_s": round(envs / elapsed, 1),
            "submit_to_running_p50_ms": round(percentile(latencies, 0.5), 1),
            "submit_to_running_p99_ms": round(percentile(latencies, 0.99), 1),
        }


def run(quick: bool = False, envs: int | None = None, console: Console | None = None) -> dict[str, Any]:
    """Both rounds; prints the table and returns the figures."""
    console = console or Console()
    count = envs or (200 if quick else 1000)
    figures: dict[str, Any] = {"benchmark": "shards", "quick": quick, "envs": count, "shards": SHARDS}
    violations: list[str] = []
    with tempfile.TemporaryDirectory(prefix="remotegpu-bench-shards-") as temporary:
        for processes, name in ((1, "one_leader"), (2, "two_leaders")):
            with bench_database(f"remotegpu_bench_shards_{processes}") as url:
                if processes == 1:
                    figures.update(calibrate(url))
                measured = _round(url, processes, count, Path(temporary), violations)
            figures.update({f"{key}_{name}": value for key, value in measured.items()})
    figures["ratio_two_leaders"] = ratio(figures["envs_per_s_two_leaders"], figures["envs_per_s_one_leader"])
    figures["violations"] = len(violations)
    print_figures(console, "remotegpu bench shards", figures, violations)
    return ordered(figures)


def main(quick: bool, envs: int | None) -> None:
    """Entry point for the CLI: table, then the figures as the last line."""
    print(json.dumps(run(quick, envs)))
