"""`remotegpu bench allocation --batch`: a worker on the scheduler's path.

Each batch: read the host snapshot (`host_snapshots`, as the scheduling pass does), plan the worker's
next environments with the capacity queue (`policies.queue`), and claim them in one transaction
(`allocate_planned`, which falls back to `allocate` for a plan that no longer holds). Releases stay
one by one, as in the one-by-one run, so both keep the cluster about as full; each is told its host, as
a reconciler step's release is by its lease row.
"""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

from remotegpu.core.capacity.batch import PlannedAllocation, allocate_planned
from remotegpu.core.capacity.release import release
from remotegpu.core.capacity.requests import AllocationOutcome, AllocationRequest
from remotegpu.core.capacity.scheduling import host_snapshots
from remotegpu.core.platform.db import make_engine
from remotegpu.policies.queue import QueuedRequest, plan_queue


def batch_worker(
    url: str, requests: list[AllocationRequest], share: int, deadline: float, batch_size: int, out: Any
) -> None:
    """One contending process on the scheduler's path: snapshot, queue plan, one transaction per batch."""
    engine = make_engine(url, pool_size=1, application_name="remotegpu-bench", pre_ping=False)
    rng = random.Random(hash(url) ^ len(requests))
    pending = list(requests)
    held: list[tuple[AllocationRequest, uuid.UUID | None]] = []  # with its host, as a step's lease row
    latencies: list[float] = []
    outcomes: dict[str, int] = {}
    releases = claims = gpus_claimed = 0
    while time.monotonic() < deadline and pending:
        batch = pending[:batch_size]
        wanted = sum(request.gpu_count for request in batch)
        while held and (
            sum(r.gpu_count for r, _ in held) + wanted > share or outcomes.get("no-capacity", 0) > releases
        ):
            victim, host = held.pop(rng.randrange(len(held)))
            with engine.begin() as connection:
                release(connection, victim.environment_id, hosts=[host] if host else [])
            releases += 1
            pending.append(victim)
        started = time.perf_counter()
        with engine.begin() as connection:
            hosts, totals = host_snapshots(connection)
        plan = plan_queue([_queued(request, index) for index, request in enumerate(batch)], hosts, totals, {})
        by_id = {request.environment_id: request for request in batch}
        planned = [
            PlannedAllocation(by_id[item.key], placement.host_key, placement.gpu_model)  # type: ignore[index, arg-type]
            for item, placement in plan.placements
        ]
        with engine.begin() as connection:
            results = allocate_planned(connection, planned)
        latencies.append(time.perf_counter() - started)
        allocated = {key for key, result in results.items() if result.outcome is AllocationOutcome.ALLOCATED}
        for result in results.values():
            outcomes[result.outcome.value] = outcomes.get(result.outcome.value, 0) + 1
        outcomes["no-capacity"] = outcomes.get("no-capacity", 0) + len(batch) - len(results)
        for request in batch:
            pending.remove(request)
            if request.environment_id in allocated:
                held.append((request, results[request.environment_id].host_id))
                claims += 1
                gpus_claimed += request.gpu_count
            else:
                pending.append(request)
    engine.dispose()
    out.put(
        {
            "latencies": latencies,
            "claims": claims,
            "outcomes": outcomes,
            "releases": releases,
            "gpus": gpus_claimed,
        }
    )


def _queued(request: AllocationRequest, order: int) -> QueuedRequest:
    return QueuedRequest(
        key=request.environment_id,
        workspace=request.workspace_id,
        priority=0,
        submitted_order=order,
        request=request.placement_request(),
    )
