"""`remotegpu bench allocation [--batch]`: worker processes contend for a seeded GPU inventory.

Each worker owns a set of environments (a fixed mix of 1, 2, 4 and 8 GPU requests, half with SSH and
Jupyter ports) and loops: allocate the next one in its own transaction; when the worker holds its share
of the cluster (or the cluster is full), release one of its holdings first. Allocation latency is the
whole transaction, commit included. Afterwards the claim history and the counters are audited; every
finding counts as a violation.

With `--batch` each worker takes the path of the scheduler's pass instead: it reads the host snapshot,
plans its next `batch_size` environments with the capacity queue (`policies.queue`) and claims them in
one transaction (`allocate_planned`, which falls back to `allocate` for a plan that no longer holds);
latency is then that of the whole batch (snapshot, plan and transaction), and releases stay one by one.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from sqlalchemy import text
from sqlalchemy.engine import URL

from remotegpu.core.capacity.allocate import AllocationOptions, allocate
from remotegpu.core.capacity.audit import audit
from remotegpu.core.capacity.quotas import QuotaLimits, set_quota
from remotegpu.core.capacity.release import release
from remotegpu.core.capacity.requests import AllocationOutcome, AllocationRequest
from remotegpu.core.environments.derived import access_port_request
from remotegpu.core.environments.states import Phase
from remotegpu.core.inventory.sync import GpuDevice, register_host
from remotegpu.core.platform.db import make_engine
from remotegpu.ops.bench import allocation_batch, claim_ceiling, claim_lean
from remotegpu.ops.bench.calibration import calibrate
from remotegpu.ops.bench.database import bench_database
from remotegpu.ops.bench.report import ordered, percentile, print_figures, ratio

GIB = 1 << 30
PARTS = ("quota_reads", "host_read", "write", "commit")
"""An allocation's parts, by the round trips it makes: the quota locks with the reads made under them
(the transaction's start included), the host's try-lock with the read under it (every host tried, the
ranking before), the claim write, the commit. `mean_ms_*` averages each over every allocation and
`tail_ms_*` over the slowest 1 %, which says whether the p99 waits on one part or on all alike."""
SIZES = (1, 1, 1, 1, 2, 2, 4, 8)
"""The request mix: mostly small, a few whole hosts."""
ACCESS_PORTS = (access_port_request("ssh"), access_port_request("jupyter"))
"""The ports of half the requests: SSH and Jupyter access, as a spec asks for them."""


@dataclass(frozen=True)
class BenchConfig:
    """Size and length of one run."""

    hosts: int = 200
    gpus_per_host: int = 8
    workers: int = 4
    seconds: float = 20.0
    workspaces: int = 20
    environments_per_worker: int = 600
    target_utilisation: float = 0.75
    seed: int = 7
    ceiling_seconds: float = 5.0
    """How long each same-run reference runs: the bare claim transaction, the same under the release rule,
    the bare claim again (the better of its two runs counts), then the lean claim."""
    batch_size: int = 0
    """0: one by one (`allocate`); else the scheduler's path, this many environments per transaction."""


BATCH_SIZE = 32
"""Environments per transaction with `--batch`: the scheduler's pass allocates in batches of this size."""

QUICK = BenchConfig(hosts=200, workers=4, seconds=6.0, environments_per_worker=300, ceiling_seconds=2.0)


def _seed(url: URL, config: BenchConfig) -> list[list[dict[str, Any]]]:
    """Hosts, tenants with quotas, and each worker's environments; returns requests per worker."""
    rng = random.Random(config.seed)
    engine = make_engine(url, pool_size=1)
    with engine.begin() as connection:
        for index in range(config.hosts):
            model = "H100" if index % 4 else "A100"
            register_host(
                connection,
                f"node-{index:04d}",
                [GpuDevice(model, 80 * GIB) for _ in range(config.gpus_per_host)],
                cpu_millis=256_000,
                memory_bytes=2048 * GIB,
                port_range=(30000, 30099),
            )
        tenants = []
        for index in range(config.workspaces):
            user = connection.execute(
                text("INSERT INTO users (email, username, password_hash) VALUES (:e, :u, 'x') RETURNING id"),
                {"e": f"bench{index}@example.org", "u": f"bench{index}"},
            ).scalar_one()
            workspace = connection.execute(
                text("INSERT INTO workspaces (name, owner_id) VALUES (:n, :o) RETURNING id"),
                {"n": f"bench-{index}", "o": user},
            ).scalar_one()
            set_quota(
                connection, "workspace", workspace, QuotaLimits(max_gpus=config.hosts * config.gpus_per_host)
            )
            tenants.append((workspace, user))
        per_worker: list[list[dict[str, Any]]] = []
        for worker in range(config.workers):
            requests = []
            for index in range(config.environments_per_worker):
                workspace, user = tenants[rng.randrange(len(tenants))]
                gpus = SIZES[rng.randrange(len(SIZES))]
                with_ports = index % 2 == 0
                environment = connection.execute(
                    text(
                        "INSERT INTO environments (workspace_id, user_id, name, spec, gpu_count, cpu_millis,"
                        " memory_bytes, phase) VALUES (:w, :u, :n, '{}', :g, :c, :m, :phase) RETURNING id"
                    ),
                    {
                        "w": workspace,
                        "u": user,
                        "n": f"w{worker}-e{index}",
                        "g": gpus,
                        "c": 4000 * gpus,
                        "m": 32 * GIB * gpus,
                        "phase": Phase.ADMITTED.value,
                    },
                ).scalar_one()
                requests.append(
                    {
                        "environment_id": str(environment),
                        "workspace_id": str(workspace),
                        "user_id": str(user),
                        "gpu_count": gpus,
                        "cpu_millis": 4000 * gpus,
                        "memory_bytes": 32 * GIB * gpus,
                        "ports": with_ports,
                    }
                )
            per_worker.append(requests)
    with engine.connect() as connection:
        # fresh tables have no statistics yet; autovacuum would gather them within a minute in production
        connection.execute(text("ANALYZE"))
        connection.commit()
    engine.dispose()
    return per_worker


def _request(data: dict[str, Any]) -> AllocationRequest:
    return AllocationRequest(
        environment_id=uuid.UUID(data["environment_id"]),
        workspace_id=uuid.UUID(data["workspace_id"]),
        user_id=uuid.UUID(data["user_id"]),
        generation=1,
        gpu_count=data["gpu_count"],
        cpu_millis=data["cpu_millis"],
        memory_bytes=data["memory_bytes"],
        ports=ACCESS_PORTS if data["ports"] else (),
    )


def _worker(
    url: str, requests: list[dict[str, Any]], share: int, deadline: float, batch_size: int, out: Any
) -> None:
    """One contending process; puts its figures on `out`."""
    if batch_size:
        allocation_batch.batch_worker(
            url, [_request(data) for data in requests], share, deadline, batch_size, out
        )
        return
    # as the reconciler's engine, whose scheduling pass allocates: no round trip per checkout
    engine = make_engine(url, pool_size=1, application_name="remotegpu-bench", pre_ping=False)
    rng = random.Random(hash(url) ^ len(requests))
    pending = [_request(data) for data in requests]
    held: list[tuple[AllocationRequest, uuid.UUID | None]] = []  # with its host, as a step's lease row
    held_gpus = 0
    latencies: list[float] = []
    outcomes: dict[str, int] = {}
    releases = 0
    gpus_claimed = 0
    cursor = 0
    marks: dict[str, float] = {}
    busy_hosts = 0

    def mark(point: str) -> None:
        """The allocation's named points, timed (where its time goes, `PARTS`); busy hosts counted."""
        nonlocal busy_hosts
        marks[point] = time.perf_counter()
        busy_hosts += point == "host-busy"

    options = AllocationOptions(pause=mark)
    parts: list[tuple[float, ...]] = []
    while time.monotonic() < deadline and pending:
        if held and (held_gpus >= share or outcomes.get("no-capacity", 0) > releases):
            victim, host = held.pop(rng.randrange(len(held)))
            with engine.begin() as connection:
                release(connection, victim.environment_id, hosts=[host] if host else [])
            held_gpus -= victim.gpu_count
            releases += 1
            pending.append(victim)
            continue
        request = pending[cursor % len(pending)]
        started = time.perf_counter()
        with engine.begin() as connection:
            result = allocate(connection, request, options)
            written = time.perf_counter()
        ended = time.perf_counter()
        outcomes[result.outcome.value] = outcomes.get(result.outcome.value, 0) + 1
        if result.outcome is AllocationOutcome.ALLOCATED:
            latencies.append(ended - started)
            parts.append(
                (
                    marks["quota-locked"] - started,
                    marks["host-locked"] - marks["quota-checked"],
                    written - marks["gpus-chosen"],
                    ended - written,
                )
            )
            gpus_claimed += request.gpu_count
            pending.remove(request)
            held.append((request, result.host_id))
            held_gpus += request.gpu_count
        else:
            cursor += 1
    engine.dispose()
    out.put(
        {
            "latencies": latencies,
            "parts": parts,
            "outcomes": outcomes,
            "releases": releases,
            "gpus": gpus_claimed,
            "busy_hosts": busy_hosts,
        }
    )


def run(
    quick: bool = False,
    workers: int | None = None,
    console: Console | None = None,
    config: BenchConfig | None = None,
    batch: bool = False,
) -> dict[str, Any]:
    """Run the benchmark, print its table, and return its figures.

    With `batch`, the batch path runs first and then, in the same run on a fresh inventory, the
    one-by-one path with as many workers (`ratio_batch_to_one_by_one`).
    """
    console = console or Console()
    config = config or (QUICK if quick else BenchConfig())
    if workers is not None:
        config = dataclasses.replace(config, workers=workers)
    if batch and not config.batch_size:
        config = dataclasses.replace(config, batch_size=BATCH_SIZE)
    compared: dict[str, Any] = {}
    if config.batch_size:
        one_by_one, _, _, _ = _measure(dataclasses.replace(config, batch_size=0), with_ceiling=False)
        compared = {
            "one_by_one_claims_per_s": one_by_one["claims_per_s"],
            "one_by_one_p99_ms": one_by_one["p99_ms"],
        }
    figures, violations, calibration, references = _measure(config, with_ceiling=True)
    ceiling, lean = references.bare, references.lean
    figures = {
        "ceiling_claims_per_s": ceiling,
        "ceiling_bare_cycle_claims_per_s": references.bare_cycle,
        "ceiling_lean_claims_per_s": lean,
        "ratio_claims": ratio(figures["claims_per_s"], ceiling),
        "ratio_bare_cycle": ratio(references.bare_cycle, ceiling),
        "ratio_lean": ratio(lean, ceiling),
        "ratio_claims_to_lean": ratio(figures["claims_per_s"], lean),
        **(
            {"ratio_batch_to_one_by_one": ratio(figures["claims_per_s"], compared["one_by_one_claims_per_s"])}
            if compared
            else {}
        ),
        "benchmark": "allocation",
        "quick": quick,
        **figures,
        "bare_cycle_releases": references.bare_cycle_releases,
        "lean_releases": references.lean_releases,
        **compared,
        **calibration,
    }
    title = "remotegpu bench allocation" + (" --batch" if config.batch_size else "")
    print_figures(console, title, figures, violations)
    return ordered(figures)


@dataclass(frozen=True)
class References:
    """The same-run references' figures (all 0 when not measured)."""

    bare: float = 0.0
    """Bare claim transactions per second."""
    bare_cycle: float = 0.0
    """Bare claims per second under the benchmark's release rule, releases being bare transactions too."""
    bare_cycle_releases: int = 0
    lean: float = 0.0
    """Lean claims per second (with the lean releases the rule asks for)."""
    lean_releases: int = 0


def _measure(
    config: BenchConfig, with_ceiling: bool
) -> tuple[dict[str, Any], list[str], dict[str, Any], References]:
    """One path on a fresh inventory: its figures, audit findings, calibration and (optionally) the
    same-run references."""
    with bench_database("remotegpu_bench_alloc") as url:
        calibration = calibrate(url)
        share = int(config.hosts * config.gpus_per_host * config.target_utilisation / config.workers)
        # enough environments that a worker reaches its share and releases (few workers: a large share)
        per_worker_needed = int(2.2 * share / (sum(SIZES) / len(SIZES)))
        config = dataclasses.replace(
            config, environments_per_worker=max(config.environments_per_worker, per_worker_needed)
        )
        per_worker = _seed(url, config)
        context = multiprocessing.get_context("fork")
        out = context.Queue()
        rendered = url.render_as_string(hide_password=False)
        started = time.monotonic()
        deadline = started + config.seconds
        processes = [
            context.Process(
                target=_worker, args=(rendered, requests, share, deadline, config.batch_size, out)
            )
            for requests in per_worker
        ]
        for process in processes:
            process.start()
        results = [out.get(timeout=config.seconds + 120) for _ in processes]
        for process in processes:
            process.join()
        wall = time.monotonic() - started
        engine = make_engine(url, pool_size=1)
        with engine.connect() as connection:
            violations = audit(connection)
            history_rows = connection.execute(text("SELECT count(*) FROM claim_history")).scalar_one()
        engine.dispose()
        references = References()
        if with_ceiling:
            # the bare claim before and after its cycle, the better of the two: run straight after the
            # measurement, the first one shares the machine with what that left (autovacuum, the
            # checkpointer) and read about a fifth low in runs where the second did not
            first = claim_ceiling.claims_per_s(url, config.workers, config.ceiling_seconds)
            cycle, cycle_releases = claim_ceiling.cycle_claims_per_s(
                url, config.workers, share, config.ceiling_seconds
            )
            ceiling = max(first, claim_ceiling.claims_per_s(url, config.workers, config.ceiling_seconds))
            lean, lean_releases, lean_findings = claim_lean.measure(
                url, config.workers, share, config.ceiling_seconds
            )
            violations = [*violations, *lean_findings]
            references = References(ceiling, cycle, cycle_releases, lean, lean_releases)

    timed = sorted(
        (latency, part)
        for result in results
        for latency, part in zip(result["latencies"], result.get("parts", ()), strict=False)
    )
    latencies = sorted(latency for result in results for latency in result["latencies"])
    claims = sum(result.get("claims", len(result["latencies"])) for result in results)
    outcomes: dict[str, int] = {}
    for result in results:
        for outcome, count in result["outcomes"].items():
            outcomes[outcome] = outcomes.get(outcome, 0) + count
    gpus = sum(result["gpus"] for result in results)
    figures = {
        "path": f"batch of {config.batch_size}" if config.batch_size else "one by one",
        "hosts": config.hosts,
        "gpus": config.hosts * config.gpus_per_host,
        "workers": config.workers,
        "seconds": round(wall, 2),
        "claims": claims,
        "claims_per_s": round(claims / wall, 1),
        "gpus_per_s": round(gpus / wall, 1),
        # one by one: an allocation's transaction; batch: a batch's snapshot, plan and transaction
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "releases": sum(result["releases"] for result in results),
        "retries": outcomes.get("contended", 0),
        "no_capacity": outcomes.get("no-capacity", 0),
        "history_rows": history_rows,
        "violations": len(violations),
        **(
            {}
            if config.batch_size
            else {
                # candidates skipped because another allocation or a release held their lock: a round trip each
                "busy_hosts_per_claim": round(
                    sum(result["busy_hosts"] for result in results) / max(claims, 1), 3
                )
            }
        ),
        **_part_figures([part for _, part in timed], [part for _, part in timed[int(len(timed) * 0.99) :]]),
    }
    return figures, violations, calibration, references


def _part_figures(every: list[tuple[float, ...]], tail: list[tuple[float, ...]]) -> dict[str, float]:
    """`mean_ms_*` and `tail_ms_*` of `PARTS` (none for the batch path, which has no such parts)."""
    figures: dict[str, float] = {}
    for prefix, sample in (("mean_ms", every), ("tail_ms", tail)):
        for index, name in enumerate(PARTS):
            if sample:
                figures[f"{prefix}_{name}"] = round(
                    sum(part[index] for part in sample) / len(sample) * 1000, 2
                )
    return figures


def main(quick: bool, workers: int | None = None, batch: bool = False) -> None:
    """Entry point for the CLI: table, then the figures as the last line."""
    figures = run(quick, workers, batch=batch)
    print(json.dumps(figures))
