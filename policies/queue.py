"""The capacity queue: who waits in what order, and who may be backfilled past the head.

Order: higher priority first; within a priority, fair share between workspaces (the workspace with the
fewest GPUs running or already ahead in the queue goes next), then submit time. Planning walks that
order over a copy of the free capacity. The first request that does not fit anywhere becomes the
*head*: the host closest to fitting it is reserved for it, and later, smaller requests are placed only
on other hosts, so backfilling never takes capacity the head is waiting for. A request that could not
fit on any host even when empty does not hold the queue (it would starve everyone behind it); it waits
with a reason that says so.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict, deque
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from remotegpu.policies.placement import (
    GpuPoolSnapshot,
    HostSnapshot,
    Placement,
    PlacementRequest,
    Strategy,
    could_ever_fit,
    rank_placements,
)

NEVER_FITS = "no host can ever fit"
"""How the reason of a request that no schedulable host could hold even when empty begins (clients such
as `remotegpu watch` stop waiting on it)."""


@dataclass(frozen=True)
class QueuedRequest:
    """One environment waiting for capacity."""

    key: Hashable
    workspace: Hashable
    priority: int
    submitted_order: float
    """Submit time as a sortable number (e.g. a POSIX timestamp)."""
    request: PlacementRequest


@dataclass(frozen=True)
class Waiting:
    """Where a request stands while it waits."""

    position: int
    reason: str


@dataclass
class QueuePlan:
    """What to try to allocate now (in order) and who keeps waiting."""

    placements: list[tuple[QueuedRequest, Placement]] = field(default_factory=list)
    waiting: dict[Hashable, Waiting] = field(default_factory=dict)
    head: Hashable | None = None
    reserved_hosts: frozenset[Hashable] = frozenset()


def order_queue(
    items: Iterable[QueuedRequest], running_gpus_by_workspace: Mapping[Any, int]
) -> list[QueuedRequest]:
    """Queue order: priority, then fair share between workspaces, then submit time."""
    by_priority: dict[int, list[QueuedRequest]] = defaultdict(list)
    for item in items:
        by_priority[item.priority].append(item)
    ordered: list[QueuedRequest] = []
    for priority in sorted(by_priority, reverse=True):
        lanes: dict[Hashable, deque[QueuedRequest]] = defaultdict(deque)
        for item in sorted(by_priority[priority], key=lambda i: (i.submitted_order, str(i.key))):
            lanes[item.workspace].append(item)
        share = {ws: running_gpus_by_workspace.get(ws, 0) for ws in lanes}
        while lanes:
            workspace = min(lanes, key=lambda ws: (share[ws], lanes[ws][0].submitted_order, str(ws)))
            item = lanes[workspace].popleft()
            ordered.append(item)
            share[workspace] += item.request.gpu_count
            if not lanes[workspace]:
                del lanes[workspace]
    return ordered


def plan_queue(
    items: Iterable[QueuedRequest],
    hosts: Iterable[HostSnapshot],
    total_gpus_by_host: Mapping[Any, Mapping[str, int]],
    running_gpus_by_workspace: Mapping[Any, int],
    strategy: Strategy = Strategy.BIN_PACK,
) -> QueuePlan:
    """Decide which waiting requests to place now, where, and the position and reason of the rest."""
    free = {host.key: host for host in hosts}
    plan = QueuePlan()
    reserved: set[Hashable] = set()
    position = 0
    for item in order_queue(items, running_gpus_by_workspace):
        usable = [host for key, host in free.items() if key not in reserved]
        ranked = rank_placements(usable, item.request, strategy)
        if ranked:
            best = ranked[0]
            plan.placements.append((item, best))
            free[best.host_key] = _take(free[best.host_key], item.request, best.gpu_model)
            continue
        position += 1
        possible = [
            host
            for host in free.values()
            if could_ever_fit(host, total_gpus_by_host.get(host.key, {}), item.request)
        ]
        if not possible:
            plan.waiting[item.key] = Waiting(position, f"{NEVER_FITS} {item.request.describe()}")
            continue
        if plan.head is None:
            plan.head = item.key
            reserved.add(_closest_to_fitting(possible, item.request).key)
        plan.waiting[item.key] = Waiting(position, f"waiting for {item.request.describe()}")
    plan.reserved_hosts = frozenset(reserved)
    return plan


def _matching_free(host: HostSnapshot, request: PlacementRequest) -> int:
    return max(
        (
            pool.free
            for pool in host.pools
            if (request.gpu_model is None or pool.model == request.gpu_model)
            and pool.model not in request.excluded_models
        ),
        default=0,
    )


def _closest_to_fitting(hosts: list[HostSnapshot], request: PlacementRequest) -> HostSnapshot:
    return min(hosts, key=lambda host: (-_matching_free(host, request), host.name))


def _take(host: HostSnapshot, request: PlacementRequest, model: str | None) -> HostSnapshot:
    pools = tuple(
        GpuPoolSnapshot(pool.model, pool.free - request.gpu_count) if pool.model == model else pool
        for pool in host.pools
    )
    return dataclasses.replace(
        host,
        pools=pools,
        cpu_millis_free=host.cpu_millis_free - request.cpu_millis,
        memory_bytes_free=host.memory_bytes_free - request.memory_bytes,
        ports_free=host.ports_free - request.ports,
    )
