"""`remotegpu bench reconcile`: submit environments and time them to `running`; then fail the leader over.

Two reconciler replicas (leader and hot standby) run in this process against a fresh database and one
in-memory cluster (pods start at once). The benchmark measures, in order:

1. idle latency: one environment at a time on an idle system, submit to running (10 samples);
2. throughput: N environments submitted at once (1 GPU each), until every one is running;
3. the steady state: every environment running, the resync period made short (1 s, as an operator's
   reload would), so resyncs ask more than the workers do: resyncs a second, asked and achieved, and
   the CPU one costs (`reconcile_costs.steady_resyncs`);
4. failover: the leader's lock session is terminated (what Postgres sees when its process dies); the
   time until the standby leads, and until a new environment submitted then is running.

Submit-to-running is measured in the database: the environment's `submitted_at` to its `Running`
event. Violations: claim-history and counter findings, duplicate pods, environments not running.

Then, with the replicas stopped, the same-run ceilings (`reconcile_ceiling`), each over as many
environments and threads as the benchmark: with the in-memory cluster, the bare lease + apply
statements (`ceiling_envs_per_s`); with `--cluster sim`, the bare cluster calls of an environment
(`ceiling_envs_per_s`) and the statements as well (`ceiling_statements_envs_per_s`). `ratio_*` is
envs/s as a fraction of each. A calibration line comes first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, config
from rich.console import Console
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from remotegpu.core.capacity.audit import audit
from remotegpu.core.cluster.kubernetes.cluster import KubernetesCluster
from remotegpu.core.cluster.memory import InMemoryCluster
from remotegpu.core.environments.desired import submit_environment
from remotegpu.core.environments.spec import parse_spec
from remotegpu.core.environments.states import Phase
from remotegpu.core.inventory.sync import GpuDevice, register_host, sync_inventory
from remotegpu.core.platform.db import make_engine
from remotegpu.core.platform.settings import Settings
from remotegpu.ops.bench import reconcile_ceiling, reconcile_costs
from remotegpu.ops.bench.calibration import calibrate
from remotegpu.ops.bench.database import bench_database, create_tenant
from remotegpu.ops.bench.report import ordered, percentile, print_figures, ratio
from remotegpu.reconciler.loop import Reconciler

GIB = 1 << 30
SPEC: dict[str, Any] = {
    "image": "pytorch:24.05",
    "resources": {"gpus": {"count": 1, "model": "H100"}, "cpu": 1, "memory": "8Gi"},
}


@dataclass(frozen=True)
class ReconcileBenchConfig:
    """Size of one run."""

    envs: int = 1000
    workers: int = 8
    idle_samples: int = 10
    timeout_s: float = 300.0
    cluster: str = "memory"
    """`memory` (in-memory cluster) or `sim` (the simulated cluster over HTTP)."""
    nodes: int = 500
    """Nodes of the simulated cluster."""
    pod_create_samples: int = 200
    """Pod creates timed for `sim_pod_create_p50_ms`."""
    steady_seconds: float = 10.0
    """How long the steady phase (every environment running, resyncs only) is measured."""
    resync_seconds: float = Settings().resync_seconds
    """The replicas' resync period until the steady phase (the steady phase waits one out first)."""


def _pod_create_p50_ms(kubeconfig: str, samples: int = 200) -> float:
    """Median time for the simulated cluster to serve a pod create, through the official client."""
    api = client.CoreV1Api(config.new_client_from_config(kubeconfig))  # type: ignore[no-untyped-call]
    timings = []
    for index in range(samples):
        body = {
            "metadata": {"name": f"probe-{index}"},
            "spec": {"containers": [{"name": "main", "image": "probe:1"}]},
        }
        started = time.perf_counter()
        api.create_namespaced_pod("default", body, _preload_content=False)  # type: ignore[arg-type]
        timings.append((time.perf_counter() - started) * 1000)
    for index in range(samples):
        api.delete_namespaced_pod(f"probe-{index}", "default", _preload_content=False)
    return round(statistics.median(timings), 2)


@contextlib.contextmanager
def _simulated_cluster_process(nodes: int, kubeconfig: Path) -> Iterator[tuple[Path, int]]:
    """`remotegpu simcluster` in a process of its own, as a real API server would be; yields its
    kubeconfig and its process id."""
    process = subprocess.Popen(  # noqa: S603 - our own CLI, arguments built here
        [
            sys.executable,
            "-m",
            "remotegpu.ops.cli",
            "simcluster",
            "--nodes",
            str(nodes),
            "--start-delay",
            "0",
            "--kubeconfig",
            str(kubeconfig),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not kubeconfig.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the simulated cluster did not start")
            time.sleep(0.05)
        yield kubeconfig, process.pid
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def _seed(engine: Engine, envs: int) -> tuple[uuid.UUID, uuid.UUID, set[str]]:
    hosts = envs // 8 + 4
    names = set()
    with engine.begin() as connection:
        for index in range(hosts):
            name = f"node-{index:04d}"
            register_host(
                connection,
                name,
                [GpuDevice("H100", 80 * GIB) for _ in range(8)],
                cpu_millis=256_000,
                memory_bytes=2048 * GIB,
            )
            names.add(name)
    workspace, user = create_tenant(engine, "bench")
    with engine.connect() as connection:
        connection.execute(text("ANALYZE"))
        connection.commit()
    return workspace, user, names


def _submit(engine: Engine, workspace: uuid.UUID, user: uuid.UUID, names: list[str]) -> list[uuid.UUID]:
    with engine.begin() as connection:
        return [
            submit_environment(
                connection, workspace_id=workspace, user_id=user, spec=parse_spec(SPEC | {"name": name})
            )
            for name in names
        ]


def _running_count(engine: Engine, envs: list[uuid.UUID] | str) -> int:
    """How many of `envs` run; `envs` may be a ready-made array literal (the poll below reuses one)."""
    ids = envs if isinstance(envs, str) else _uuid_array(envs)
    with engine.connect() as connection:
        return int(
            connection.execute(
                text(
                    "SELECT count(*) FROM environments"
                    " WHERE id = ANY(CAST(:ids AS uuid[])) AND phase = :running"
                ),
                {"ids": ids, "running": Phase.RUNNING.value},
            ).scalar_one()
        )


def _uuid_array(envs: list[uuid.UUID]) -> str:
    """A Postgres array literal: one string to send instead of a thousand values to adapt per poll."""
    return "{" + ",".join(str(env) for env in envs) + "}"


def _wait_running(engine: Engine, envs: list[uuid.UUID], timeout_s: float) -> bool:
    """Poll until all of `envs` run; the poll is cheap, so the harness takes little from the system."""
    deadline = time.monotonic() + timeout_s
    ids = _uuid_array(envs)
    while time.monotonic() < deadline:
        if _running_count(engine, ids) == len(envs):
            return True
        time.sleep(0.005 if len(envs) == 1 else 0.1)
    return False


def _latencies_ms(engine: Engine, envs: list[uuid.UUID]) -> list[float]:
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT extract(epoch FROM (ev.created_at - e.submitted_at)) * 1000"
                "  FROM environments e JOIN events ev ON ev.environment_id = e.id AND ev.reason = 'Running'"
                " WHERE e.id = ANY(:ids)"
            ),
            {"ids": envs},
        ).scalars()
        return sorted(float(value) for value in rows)


def run(
    quick: bool = False,
    envs: int | None = None,
    console: Console | None = None,
    config: ReconcileBenchConfig | None = None,
) -> dict[str, Any]:
    """Run the benchmark, print its table, and return its figures."""
    console = console or Console()
    config = config or ReconcileBenchConfig(envs=200 if quick else 1000)
    if envs is not None:
        config = dataclasses.replace(config, envs=envs)
    settings = Settings(reconcile_workers=config.workers, resync_seconds=config.resync_seconds)
    figures: dict[str, Any] = {
        "benchmark": "reconcile",
        "quick": quick,
        "envs": config.envs,
        "workers": config.workers,
    }
    figures["cluster"] = config.cluster
    with bench_database("remotegpu_bench_reconcile") as url, contextlib.ExitStack() as stack:
        figures.update(calibrate(url))
        engine = make_engine(url, pool_size=4)
        stack.callback(engine.dispose)
        cluster: Any
        kubeconfig: Path | None = None
        sim_pid: int | None = None
        if config.cluster == "sim":
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            kubeconfig, sim_pid = stack.enter_context(
                _simulated_cluster_process(config.nodes, folder / "kubeconfig")
            )
            cluster = KubernetesCluster.from_kubeconfig(str(kubeconfig))
            figures["nodes"] = config.nodes
            figures["sim_pod_create_p50_ms"] = _pod_create_p50_ms(str(kubeconfig), config.pod_create_samples)
            workspace, user = create_tenant(engine, "bench")
            with engine.begin() as connection:
                sync_inventory(connection, cluster.list_nodes())
        else:
            workspace, user, names = _seed(engine, config.envs + config.idle_samples + 1)
            cluster = InMemoryCluster(nodes=names)
        replicas, stop = _start_replicas(url, cluster, settings)
        gc.freeze()  # as `remotegpu reconciler` does once started (the replicas run in this process)
        try:
            leader = _wait_leader(replicas)
            idle = []
            for index in range(config.idle_samples):
                (probe,) = _submit(engine, workspace, user, [f"idle-{index}"])
                _wait_running(engine, [probe], 30)
                idle += _latencies_ms(engine, [probe])
            figures["idle_submit_to_running_p50_ms"] = round(percentile(idle, 0.5), 1)

            flood, all_running = _flood(engine, workspace, user, config, leader, sim_pid, figures)
            figures.update(
                reconcile_costs.steady_resyncs(
                    [replica for replica, _ in replicas],
                    settings,
                    _running_count(engine, flood),
                    config.steady_seconds,
                    sim_pid,
                )
            )
            figures["failover_s"], figures["failover_to_running_s"] = _fail_over(
                engine, leader, replicas, workspace, user, config.timeout_s
            )
            violations = _violations(engine, cluster, flood, all_running)
        finally:
            stop.set()
            for _replica, thread in replicas:
                thread.join(timeout=30)
            gc.unfreeze()
        figures.update(_ceilings(url, engine, config, workspace, user, figures["envs_per_s"], kubeconfig))
    figures["violations"] = len(violations)
    print_figures(console, "remotegpu bench reconcile", figures, violations)
    return ordered(figures)


def _flood(
    engine: Engine,
    workspace: uuid.UUID,
    user: uuid.UUID,
    config: ReconcileBenchConfig,
    leader: Reconciler,
    sim_pid: int | None,
    figures: dict[str, Any],
) -> tuple[list[uuid.UUID], bool]:
    """Submit `config.envs` at once and wait for them all to run; their figures and what each costs
    (`reconcile_costs`) go into `figures`. Returns the environments and whether all run."""
    meter = reconcile_costs.FloodMeter(engine, sim_pid)
    started = time.monotonic()
    flood = _submit(engine, workspace, user, [f"env-{i}" for i in range(config.envs)])
    all_running = _wait_running(engine, flood, config.timeout_s)
    elapsed = time.monotonic() - started
    figures.update(meter.figures(config.envs))
    figures.update(reconcile_costs.leader_job_costs(leader.ctx, _running_count(engine, flood)))
    latencies = _latencies_ms(engine, flood)
    figures.update(
        {
            "seconds": round(elapsed, 2),
            "envs_per_s": round(config.envs / elapsed, 1),
            "submit_to_running_p50_ms": round(percentile(latencies, 0.5), 1),
            "submit_to_running_p99_ms": round(percentile(latencies, 0.99), 1),
        }
    )
    return flood, all_running


def _ceilings(
    url: URL,
    engine: Engine,
    config: ReconcileBenchConfig,
    workspace: uuid.UUID,
    user: uuid.UUID,
    envs_per_s: float,
    kubeconfig: Path | None = None,
) -> dict[str, float]:
    """The same-run ceilings and the benchmark's ratios to them (see the module's docstring)."""
    statements = reconcile_ceiling.statements_envs_per_s(
        url, workspace, user, SPEC, envs=config.envs, workers=config.workers
    )
    if kubeconfig is None:
        return {"ceiling_envs_per_s": statements, "ratio_envs": ratio(envs_per_s, statements)}
    calls = reconcile_ceiling.cluster_envs_per_s(
        str(kubeconfig),
        workspace,
        SPEC,
        reconcile_ceiling.free_gpu_nodes(engine),
        envs=config.envs,
        workers=config.workers,
    )
    return {
        "ceiling_envs_per_s": calls,
        "ratio_envs": ratio(envs_per_s, calls),
        "ceiling_statements_envs_per_s": statements,
        "ratio_statements_envs": ratio(envs_per_s, statements),
    }


def _start_replicas(
    url: URL, cluster: Any, settings: Settings
) -> tuple[list[tuple[Reconciler, threading.Thread]], threading.Event]:
    stop = threading.Event()
    replicas = []
    for index in range(2):
        replica = Reconciler(url, cluster, settings, identity=f"bench-{index}")
        thread = threading.Thread(target=replica.run, args=(stop,), daemon=True)
        thread.start()
        replicas.append((replica, thread))
        if index == 0:
            _wait_leader(replicas)
    return replicas, stop


def _wait_leader(replicas: list[tuple[Reconciler, threading.Thread]], timeout_s: float = 30) -> Reconciler:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for replica, _ in replicas:
            if replica.is_leader:
                return replica
        time.sleep(0.01)
    raise RuntimeError("no reconciler became leader")


def _fail_over(
    engine: Engine,
    leader: Reconciler,
    replicas: list[tuple[Reconciler, threading.Thread]],
    workspace: uuid.UUID,
    user: uuid.UUID,
    timeout_s: float,
) -> tuple[float, float]:
    """Terminate the leader's lock session; seconds until the standby leads, and until new work runs."""
    pid = leader.elector.backend_pid()
    started = time.monotonic()
    with engine.connect() as connection:  # that pid in this database only: the server may be shared
        connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE pid = :pid AND datname = current_database()"
            ),
            {"pid": pid},
        ).scalar_one()
    standby = [replica for replica, _ in replicas if replica is not leader]
    while not any(replica.is_leader for replica in standby):
        if time.monotonic() - started > 60:
            raise RuntimeError("the standby never took over")
        time.sleep(0.01)
    took_over = time.monotonic() - started
    (probe,) = _submit(engine, workspace, user, ["after-failover"])
    # The new leader first resyncs every running environment, which were due before the probe: with
    # thousands that takes longer than 30 s (the figure says how long; not reaching it is a violation).
    _wait_running(engine, [probe], timeout_s)
    return round(took_over, 2), round(time.monotonic() - started, 2)


def _violations(engine: Engine, cluster: Any, flood: list[uuid.UUID], all_running: bool) -> list[str]:
    with engine.connect() as connection:
        problems = audit(connection)
    if isinstance(cluster, InMemoryCluster):
        duplicates = [name for name, count in cluster.creates.items() if count > 1]
        if duplicates:
            problems.append(f"pods created more than once: {duplicates[:5]}")
    if isinstance(cluster, KubernetesCluster):
        problems += cluster_object_violations(engine, cluster)
    if not all_running:
        problems.append(f"{len(flood) - _running_count(engine, flood)} environments never reached running")
    return problems


def cluster_object_violations(engine: Engine, cluster: KubernetesCluster) -> list[str]:
    """What the cluster holds must match the database: one pod and one Service per running environment,
    nothing for an environment that is not running."""
    with engine.connect() as connection:
        running = set(
            connection.execute(
                text("SELECT id FROM environments WHERE phase = :running"), {"running": Phase.RUNNING.value}
            ).scalars()
        )
    counts: dict[tuple[str, uuid.UUID], int] = {}
    for kind, _, _, environment in cluster.owned_objects():
        counts[(kind, environment)] = counts.get((kind, environment), 0) + 1
    problems = [
        f"{count} {kind}s for environment {environment}"
        for (kind, environment), count in counts.items()
        if count > 1
    ]
    problems += [
        f"a {kind} for environment {environment}, which is not running"
        for (kind, environment) in counts
        if environment not in running
    ]
    problems += [
        f"no {kind} for running environment {environment}"
        for environment in running
        for kind in ("pod", "service")
        if (kind, environment) not in counts
    ]
    return problems


def main(quick: bool, envs: int | None = None, cluster: str = "memory", nodes: int = 500) -> None:
    """Entry point for the CLI: table, then the figures as the last line."""
    count = envs or (200 if quick else 1000)
    # at least 10 environments/s, or the run is over: 10,000 take longer than the 300 s default
    config = ReconcileBenchConfig(
        envs=count,
        cluster=cluster,
        nodes=nodes,
        timeout_s=max(300.0, count / 10),
        steady_seconds=3.0 if quick else 10.0,
    )
    print(json.dumps(run(quick, config=config)))
