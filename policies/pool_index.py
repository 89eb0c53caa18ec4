"""Free GPU pools bucketed by model and free count: the best placement of a GPU request without a host scan.

`best_placement` tries every host for every request. A plan that places a flood of 10,000 environments
onto 2,000 empty hosts made 20 million `fits` calls, and the scheduling pass held the GIL for most of
its time (#25). What `best_placement` picks is the minimum of (free GPUs of the pool, host name, model)
under bin-pack, of (-free, host name, model) under spread, among the pools that fit. So here the pools
with a free GPU on schedulable hosts sit, per model, in buckets by free count, each bucket sorted by
(host name, model, the host's position, the pool's position). A request for g GPUs walks the free
counts ≥ g (ascending for bin-pack, descending for spread) and, within one, the pools of the models it
accepts in that order; the first whose host is not reserved and has room besides GPUs (CPU, memory,
ports) is the one `best_placement` would pick — equal keys go to the earlier host, as `min` keeps the
first. A request then costs a look at a few free counts and a bisection per pool a placement changes,
not a look at every host. Hosts without that other room are skipped one by one: a cluster full of them
costs a scan again, but never a different answer.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Container, Hashable, Iterable, Iterator

from remotegpu.policies.placement import (
    HostSnapshot,
    Placement,
    PlacementRequest,
    Strategy,
    has_room_besides_gpus,
)

_Entry = tuple[str, str, int, int]
"""(host name, model, host position, pool position): one pool with a free GPU, in tie-break order."""


class PoolIndex:
    """The current snapshot of each host, and its pools with a free GPU bucketed by model and free count."""

    def __init__(self, hosts: Iterable[HostSnapshot]) -> None:
        """Index `hosts` (distinct keys), in the order `best_placement` would see them."""
        self._hosts = list(hosts)
        self._positions = {host.key: position for position, host in enumerate(self._hosts)}
        self._buckets: dict[str, dict[int, list[_Entry]]] = {}
        for position, host in enumerate(self._hosts):
            self._add(position, host)

    def best(
        self, request: PlacementRequest, strategy: Strategy, reserved: Container[Hashable]
    ) -> Placement | None:
        """What `best_placement` would give for a GPU request over the hosts not in `reserved`."""
        if request.gpu_count < 1:
            raise ValueError("the pool index places GPU requests only")
        models = [
            model
            for model in self._buckets
            if (request.gpu_model is None or model == request.gpu_model)
            and model not in request.excluded_models
        ]
        counts = {free for model in models for free in self._buckets[model] if free >= request.gpu_count}
        for free in sorted(counts, reverse=strategy is Strategy.SPREAD):
            for name, model, position, _ in self._pools(models, free):
                host = self._hosts[position]
                if host.key not in reserved and has_room_besides_gpus(host, request):
                    return Placement(host.key, name, model, free)
        return None

    def replace(self, host: HostSnapshot) -> None:
        """Take the new snapshot of an indexed host (after a placement took some of it)."""
        position = self._positions[host.key]
        self._remove(position, self._hosts[position])
        self._hosts[position] = host
        self._add(position, host)

    def _pools(self, models: list[str], free: int) -> Iterator[_Entry]:
        buckets = [self._buckets[model][free] for model in models if free in self._buckets[model]]
        return iter(buckets[0]) if len(buckets) == 1 else heapq.merge(*buckets)

    def _add(self, position: int, host: HostSnapshot) -> None:
        if not host.schedulable:
            return
        for index, pool in enumerate(host.pools):
            if pool.free > 0:
                bucket = self._buckets.setdefault(pool.model, {}).setdefault(pool.free, [])
                bisect.insort(bucket, (host.name, pool.model, position, index))

    def _remove(self, position: int, host: HostSnapshot) -> None:
        if not host.schedulable:
            return
        for index, pool in enumerate(host.pools):
            if pool.free > 0:
                by_free = self._buckets[pool.model]
                bucket = by_free[pool.free]
                del bucket[bisect.bisect_left(bucket, (host.name, pool.model, position, index))]
                if not bucket:
                    del by_free[pool.free]
