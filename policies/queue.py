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
import heapq
from collections import defaultdict, deque
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from remotegpu.policies.placement import (
    GpuPoolSnapshot,
    HostSnapshot,
    Placement,
    PlacementRequest,
    Strategy,
    best_placement,
    could_ever_fit,
)
from remotegpu.policies.pool_index import PoolIndex

NEVER_FITS = "no host can ever fit"
"""How the reason of a request that no schedulable host could hold even when empty begins (clients such
as `remotegpu watch` stop waiting on it)."""


class QueuedRequest(NamedTuple):
    """One environment waiting for capacity. (Named tuples, as `Waiting`: a deep queue makes thousands
    of each per pass, and a frozen dataclass takes several times as long to build.)"""

    key: Hashable
    workspace: Hashable
    priority: int
    submitted_order: float
    """Submit time as a sortable number (e.g. a POSIX timestamp)."""
    request: PlacementRequest


class Waiting(NamedTuple):
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
        # The workspace with the least share goes next (ties: the older head, then the name). Only the
        # lane just served changes its key, so a heap of lanes gives the same order as a scan per item.
        heap = [
            (running_gpus_by_workspace.get(ws, 0), lane[0].submitted_order, str(ws), ws)
            for ws, lane in lanes.items()
        ]
        heapq.heapify(heap)
        while heap:
            share, _, name, workspace = heapq.heappop(heap)
            lane = lanes[workspace]
            item = lane.popleft()
            ordered.append(item)
            if lane:
                heapq.heappush(
                    heap, (share + item.request.gpu_count, lane[0].submitted_order, name, workspace)
                )
    return ordered


def plan_queue(
    items: Iterable[QueuedRequest],
    hosts: Iterable[HostSnapshot],
    total_gpus_by_host: Mapping[Any, Mapping[str, int]],
    running_gpus_by_workspace: Mapping[Any, int],
    strategy: Strategy = Strategy.BIN_PACK,
) -> QueuePlan:
    """Decide which waiting requests to place now, where, and the position and reason of the rest.

    Free capacity only shrinks while a plan is made and reservations only grow, so a request that found
    no placement rules out every later one that asks for at least as much of everything (same model
    and exclusions): those wait without another look at every host. What a deep queue costs is then
    about one look per distinct request shape, not one per waiting environment. A GPU request is placed
    through a `PoolIndex` (pools bucketed by free count: a few buckets to look at, not every host);
    only CPU-only requests scan the hosts.
    """
    free = {host.key: host for host in hosts}
    pools = PoolIndex(free.values())
    plan = QueuePlan()
    reserved: set[Hashable] = set()
    unplaceable: list[PlacementRequest] = []
    # Shapes that wait without a look (unplaceable, or covered by one that is), with their reason: in a
    # deep queue most requests are of a blocked shape, so this is the one lookup they cost.
    blocked: dict[PlacementRequest, str] = {}
    ever_fits = _EverFits(free.values(), total_gpus_by_host)
    waiting = plan.waiting
    position = 0
    for item in order_queue(items, running_gpus_by_workspace):
        request = item.request
        reason = blocked.get(request)
        if reason is None:
            best = None
            if not any(_covers(smaller, request) for smaller in unplaceable):
                if request.gpu_count == 0:
                    unreserved = (host for key, host in free.items() if key not in reserved)
                    best = best_placement(unreserved, request, strategy)
                else:
                    best = pools.best(request, strategy, reserved)
                if best is not None:
                    plan.placements.append((item, best))
                    taken = free[best.host_key] = _take(free[best.host_key], request, best.gpu_model)
                    pools.replace(taken)
                    continue
                unplaceable.append(request)
            wording = NEVER_FITS if not ever_fits(request) else "waiting for"
            reason = blocked[request] = f"{wording} {request.describe()}"
        position += 1
        if plan.head is None and ever_fits(request):
            plan.head = item.key
            possible = [
                host
                for host in free.values()
                if could_ever_fit(host, total_gpus_by_host.get(host.key, {}), request)
            ]
            reserved.add(_closest_to_fitting(possible, request).key)
        waiting[item.key] = Waiting(position, reason)
    plan.reserved_hosts = frozenset(reserved)
    return plan


def _covers(smaller: PlacementRequest, request: PlacementRequest) -> bool:
    """`request` asks for at least what `smaller` does, of the same GPU model and exclusions."""
    return (
        smaller.gpu_model == request.gpu_model
        and smaller.excluded_models == request.excluded_models
        and (smaller.gpu_count == 0) == (request.gpu_count == 0)
        and smaller.gpu_count <= request.gpu_count
        and smaller.cpu_millis <= request.cpu_millis
        and smaller.memory_bytes <= request.memory_bytes
        and smaller.ports <= request.ports
    )


class _EverFits:
    """Whether a request could fit some host if it were empty: `could_ever_fit` over every host, once
    per request shape (it depends only on the hosts' totals and schedulability, which a plan keeps)."""

    def __init__(self, hosts: Iterable[HostSnapshot], totals: Mapping[Any, Mapping[str, int]]) -> None:
        self._hosts = list(hosts)
        self._totals = totals
        self._known: dict[PlacementRequest, bool] = {}

    def __call__(self, request: PlacementRequest) -> bool:
        if request not in self._known:
            self._known[request] = any(
                could_ever_fit(host, self._totals.get(host.key, {}), request) for host in self._hosts
            )
        return self._known[request]


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
