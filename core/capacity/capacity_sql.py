"""Free capacity in SQL: the fragments every query about what a host can still take is built from.

Placement candidates, the scheduler's snapshot, the read under a host's lock and the pool recounts all
ask the same questions (is the host schedulable, what is left of its CPU, memory and port range, which
GPUs are in the pool and unclaimed, which host ports are taken); each answer is written here once.
Fragments name their tables by alias: `h` for `hosts`, `g` for `gpus`.
"""

from __future__ import annotations

from typing import Any

SCHEDULABLE = "NOT h.cordoned AND NOT h.draining AND h.health = 'ready' AND h.removed_at IS NULL"
"""The host may take new placements: not cordoned or draining, ready, not removed."""

CPU_FREE = "h.cpu_millis_allocatable - h.cpu_millis_foreign - h.cpu_millis_claimed"
"""CPU (millis) neither claimed by us nor used by foreign pods."""

MEMORY_FREE = "h.memory_bytes_allocatable - h.memory_bytes_foreign - h.memory_bytes_claimed"
"""Memory (bytes) neither claimed by us nor used by foreign pods."""

PORTS_FREE = (
    "h.port_range_end - h.port_range_start + 1 - h.ports_claimed - jsonb_array_length(h.foreign_ports)"
)
"""How many host ports of the range are neither mapped by us nor held by foreign pods."""

HEADROOM_COLUMNS = f"{CPU_FREE} AS cpu_free, {MEMORY_FREE} AS memory_free, {PORTS_FREE} AS ports_free"
"""The three free counters, as the columns `cpu_free`, `memory_free` and `ports_free`."""

FITS_HEADROOM = (
    f"{CPU_FREE} >= :cpu_millis AND {MEMORY_FREE} >= :memory_bytes AND {PORTS_FREE} >= :port_count"
)
"""The host has room for `:cpu_millis`, `:memory_bytes` and `:port_count` host ports."""

GPU_IN_POOL = "g.health = 'healthy' AND NOT g.foreign_use"
"""The GPU counts in its host's pool: healthy and not used by a foreign pod."""

_ACTIVE_CLAIM_OF_GPU = "SELECT 1 FROM gpu_claims c WHERE c.gpu_id = g.id AND c.released_at IS NULL"

GPU_UNCLAIMED = f"NOT EXISTS ({_ACTIVE_CLAIM_OF_GPU})"
"""No active claim holds the GPU."""

GPU_UNCLAIMED_PROBED = f"NOT EXISTS ({_ACTIVE_CLAIM_OF_GPU} OFFSET 0)"
"""`GPU_UNCLAIMED` for a few GPUs (one host's): an index probe per GPU. The `OFFSET 0` keeps the planner
from turning it into an anti-join, which it hashes over every active claim of the cluster (in
`bench allocation`, some 1,200 of them for a host's 8 GPUs: about half of what the read under the host
lock cost)."""

PORTS_IN_USE = """
    (SELECT coalesce(jsonb_agg(jsonb_build_object('port', m.host_port, 'protocol', m.protocol)), '[]')
       FROM port_mappings m WHERE m.host_id = h.id AND m.released_at IS NULL) || h.foreign_ports"""
"""The host ports taken on host `h`, ours and foreign pods', as a JSON list of `{port, protocol}`."""


def ports_in_use(taken: list[dict[str, Any]] | None) -> set[tuple[int, str]]:
    """The `(port, protocol)` pairs of a `PORTS_IN_USE` value."""
    return {(int(entry["port"]), str(entry["protocol"])) for entry in taken or []}
