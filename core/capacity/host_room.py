"""What is left on a locked host, and fitting requests onto it: the one check both allocation paths make.

Under a host's advisory lock, one statement reads what the host can still take (whether it is
schedulable, its free CPU and memory, its free GPUs by model, the host ports in use); `HostRoom.take`
then fits a request and counts it as taken, so a batch fills a host request by request.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, text

from remotegpu.core.capacity.capacity_sql import (
    CPU_FREE,
    GPU_IN_POOL,
    GPU_UNCLAIMED_PROBED,
    MEMORY_FREE,
    PORTS_IN_USE,
    SCHEDULABLE,
    ports_in_use,
)
from remotegpu.core.capacity.requests import (
    AllocationOutcome,
    AllocationRequest,
    AllocationResult,
    ClaimedPort,
)
from remotegpu.core.environments.states import Protocol
from remotegpu.core.platform.pipeline import Statement
from remotegpu.policies.host_ports import choose_host_ports

# Planned anew at each execution (a generic plan guesses 10 hosts for `ANY(:hosts)`, so Postgres keeps
# custom plans): unlike a generic plan made once while the claim tables were still small, a custom plan
# keeps probing indexes as they grow. The free-GPU test is the probed one (see `GPU_UNCLAIMED_PROBED`).
_HOSTS_UNDER_LOCK_SQL = text(
    f"""
    SELECT h.id, {SCHEDULABLE} AS schedulable, {CPU_FREE} AS cpu_free, {MEMORY_FREE} AS memory_free,
           h.port_range_start, h.port_range_end,
           coalesce((SELECT json_agg(json_build_array(g.id, g.model) ORDER BY g.index) FROM gpus g
                      WHERE g.host_id = h.id AND {GPU_IN_POOL} AND {GPU_UNCLAIMED_PROBED}), '[]') AS free_gpus,
           {PORTS_IN_USE} AS ports_in_use
      FROM hosts h
     WHERE h.id = ANY(CAST(:hosts AS uuid[]))
    """
)


@dataclass
class HostRoom:
    """What is left on one locked host as requests fill it."""

    schedulable: bool
    cpu_millis: int
    memory_bytes: int
    port_range: tuple[int, int]
    free_gpus: dict[str, list[uuid.UUID]]
    ports_in_use: set[tuple[int, str]] = field(default_factory=set)

    @classmethod
    def from_row(cls, row: Any) -> HostRoom:
        """From a row of the read under the host lock."""
        free: dict[str, list[uuid.UUID]] = {}
        for gpu_id, model in row.free_gpus:
            free.setdefault(model, []).append(uuid.UUID(gpu_id))
        return cls(
            schedulable=row.schedulable,
            cpu_millis=row.cpu_free,
            memory_bytes=row.memory_free,
            port_range=(row.port_range_start, row.port_range_end),
            free_gpus=free,
            ports_in_use=ports_in_use(row.ports_in_use),
        )

    def take(self, request: AllocationRequest, gpu_model: str | None) -> AllocationResult | None:
        """Fit `request` here on `gpu_model` GPUs (and count it as taken), or None when it does not fit."""
        if (
            not self.schedulable
            or request.cpu_millis > self.cpu_millis
            or request.memory_bytes > self.memory_bytes
        ):
            return None
        free = self.free_gpus.get(gpu_model or "", []) if request.gpu_count else []
        if len(free) < request.gpu_count:
            return None
        ports: list[ClaimedPort] = []
        if request.ports:
            protocols = [Protocol(port.protocol) for port in request.ports]
            host_ports = choose_host_ports([p.value for p in protocols], *self.port_range, self.ports_in_use)
            if host_ports is None:
                return None
            ports = [
                ClaimedPort(port.container_port, host_port, protocol, port.purpose, port.name)
                for port, host_port, protocol in zip(request.ports, host_ports, protocols, strict=True)
            ]
        gpu_ids = tuple(free[: request.gpu_count])
        del free[: request.gpu_count]
        self.cpu_millis -= request.cpu_millis
        self.memory_bytes -= request.memory_bytes
        self.ports_in_use |= {(port.host_port, port.protocol.value) for port in ports}
        return AllocationResult(
            AllocationOutcome.ALLOCATED,
            gpu_model=gpu_model if request.gpu_count else None,
            gpu_ids=gpu_ids,
            ports=tuple(ports),
        )


def read_rooms(connection: Connection, host_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, HostRoom]:
    """What is left on each of `host_ids`, whose advisory locks the caller holds; one statement."""
    if not host_ids:
        return {}
    return rooms_from_rows(connection.execute(*room_statement(host_ids)))


def room_statement(host_ids: Sequence[uuid.UUID]) -> Statement:
    """The read of `read_rooms`, for a pipeline that takes the host locks first."""
    return _HOSTS_UNDER_LOCK_SQL, {"hosts": list(host_ids)}


def rooms_from_rows(rows: Iterable[Any]) -> dict[uuid.UUID, HostRoom]:
    """The rooms of a `room_statement`'s rows, by host."""
    return {row.id: HostRoom.from_row(row) for row in rows}
