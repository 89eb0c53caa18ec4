"""Where an environment should run: pure ranking of hosts over a snapshot of free capacity.

Bin-pack (the default) puts a request on the host whose matching GPU pool has the fewest free GPUs that
still fit, so large contiguous blocks stay free for large requests (less fragmentation). Spread does
the opposite, for resilience. Hosts that are cordoned, draining or not ready, and GPUs that are
unhealthy, never appear as free capacity. Ties break on the host name, so the ranking is deterministic;
`rank_placements` can break them on a hash of the host name with a key of the caller's instead (the
environment being placed), so that allocators placing different environments at once do not all try
the same one of many equally good hosts first and queue on its lock.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field


class Strategy(enum.StrEnum):
    """Placement strategy."""

    BIN_PACK = "bin-pack"
    SPREAD = "spread"


@dataclass(frozen=True)
class GpuPoolSnapshot:
    """Free healthy GPUs of one model on one host."""

    model: str
    free: int


@dataclass(frozen=True)
class HostSnapshot:
    """What placement needs to know of one host."""

    key: Hashable
    name: str
    schedulable: bool
    """False when cordoned, draining, down or gone."""
    pools: tuple[GpuPoolSnapshot, ...]
    cpu_millis_free: int
    memory_bytes_free: int
    ports_free: int


@dataclass(frozen=True)
class PlacementRequest:
    """The resources one environment asks for."""

    gpu_count: int
    gpu_model: str | None = None
    """None means any model (all GPUs of one environment still share one model)."""
    cpu_millis: int = 0
    memory_bytes: int = 0
    ports: int = 0
    excluded_models: frozenset[str] = field(default_factory=frozenset)
    """Models the caller rules out (e.g. no per-model quota headroom left)."""

    def describe(self) -> str:
        """Human wording of the GPU part, as in `waiting for 2×H100`."""
        if self.gpu_count == 0:
            return "CPU-only capacity"
        return f"{self.gpu_count}×{self.gpu_model or 'any GPU'}"


@dataclass(frozen=True)
class Placement:
    """One way to satisfy a request: this host, GPUs of this model."""

    host_key: Hashable
    host_name: str
    gpu_model: str | None
    free_gpus_before: int


def fits(host: HostSnapshot, request: PlacementRequest) -> list[Placement]:
    """Every placement of `request` on `host` (one per matching GPU model); empty when it does not fit."""
    if not has_room_besides_gpus(host, request):
        return []
    if request.gpu_count == 0:
        return [Placement(host.key, host.name, None, sum(pool.free for pool in host.pools))]
    return [
        Placement(host.key, host.name, pool.model, pool.free)
        for pool in host.pools
        if pool.free >= request.gpu_count
        and (request.gpu_model is None or pool.model == request.gpu_model)
        and pool.model not in request.excluded_models
    ]


def has_room_besides_gpus(host: HostSnapshot, request: PlacementRequest) -> bool:
    """What `fits` asks of a host apart from its GPU pools: schedulable, enough CPU, memory and ports."""
    return (
        host.schedulable
        and host.cpu_millis_free >= request.cpu_millis
        and host.memory_bytes_free >= request.memory_bytes
        and host.ports_free >= request.ports
    )


def rank_placements(
    hosts: Iterable[HostSnapshot],
    request: PlacementRequest,
    strategy: Strategy = Strategy.BIN_PACK,
    tie_break: str = "",
) -> list[Placement]:
    """All placements of `request`, best first under `strategy`; deterministic for equal inputs.

    Equally good placements (as many free GPUs) come in host-name order, or, given `tie_break`, in the
    order of a hash of it with the host name: a different order for each key, the same for the same key.
    """
    candidates = [placement for host in hosts for placement in fits(host, request)]
    key = _bin_pack_key if strategy is Strategy.BIN_PACK else _spread_key
    if tie_break:
        candidates.sort(
            key=lambda placement: (key(placement)[0], _mixed(tie_break, placement.host_name), key(placement))
        )
    else:
        candidates.sort(key=key)
    return candidates


def _mixed(tie_break: str, host_name: str) -> bytes:
    return hashlib.blake2b(f"{tie_break}:{host_name}".encode(), digest_size=8).digest()


def _bin_pack_key(placement: Placement) -> tuple[int, str, str]:
    return (placement.free_gpus_before, placement.host_name, placement.gpu_model or "")


def _spread_key(placement: Placement) -> tuple[int, str, str]:
    return (-placement.free_gpus_before, placement.host_name, placement.gpu_model or "")


def best_placement(
    hosts: Iterable[HostSnapshot], request: PlacementRequest, strategy: Strategy = Strategy.BIN_PACK
) -> Placement | None:
    """The first placement `rank_placements` would give without a tie-break key (None when none fits),
    without sorting the rest."""
    key = _bin_pack_key if strategy is Strategy.BIN_PACK else _spread_key
    return min((placement for host in hosts for placement in fits(host, request)), key=key, default=None)


def could_ever_fit(
    host: HostSnapshot, total_gpus_by_model: Mapping[str, int], request: PlacementRequest
) -> bool:
    """True when `request` would fit `host` if every GPU of the host were free (CPU and memory aside)."""
    if not host.schedulable:
        return False
    if request.gpu_count == 0:
        return True
    return any(
        total >= request.gpu_count
        and (request.gpu_model is None or model == request.gpu_model)
        and model not in request.excluded_models
        for model, total in total_gpus_by_model.items()
    )
