"""Registering hosts and their GPUs, with the `gpu_pools` counters placement reads.

The cluster inventory sync calls `register_host` for new nodes; tests and benchmarks seed with it.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, text

from remotegpu.core import clock
from remotegpu.core.states import HostHealth


@dataclass(frozen=True)
class GpuDevice:
    """One GPU as the node reports it."""

    model: str
    memory_bytes: int | None = None
    device_uuid: str | None = None


_INSERT_HOST_SQL = text(
    """
    INSERT INTO hosts (name, labels, cpu_millis_allocatable, memory_bytes_allocatable,
                       port_range_start, port_range_end, health, last_heartbeat_at)
    VALUES (:name, CAST(:labels AS jsonb), :cpu, :memory, :port_start, :port_end, :health, :heartbeat)
    RETURNING id
    """
)
_INSERT_GPUS_SQL = text(
    """
    INSERT INTO gpus (host_id, index, model, memory_bytes, device_uuid)
    SELECT :host_id, i, m, mem, u
      FROM unnest(CAST(:indexes AS int[]), CAST(:models AS text[]), CAST(:memories AS bigint[]),
                  CAST(:uuids AS text[])) AS t(i, m, mem, u)
    """
)
_INSERT_POOLS_SQL = text(
    """
    INSERT INTO gpu_pools (host_id, model, total, free)
    SELECT :host_id, m, n, n FROM unnest(CAST(:models AS text[]), CAST(:counts AS int[])) AS t(m, n)
    """
)


def register_host(
    connection: Connection,
    name: str,
    gpus: Sequence[GpuDevice],
    *,
    cpu_millis: int,
    memory_bytes: int,
    port_range: tuple[int, int] = (30000, 32767),
    health: HostHealth = HostHealth.READY,
    labels: dict[str, str] | None = None,
) -> uuid.UUID:
    """Insert a host with its GPUs (indexes in the given order) and their pools; returns the host id."""
    import json

    host_id: uuid.UUID = connection.execute(
        _INSERT_HOST_SQL,
        {
            "name": name,
            "labels": json.dumps(labels or {}),
            "cpu": cpu_millis,
            "memory": memory_bytes,
            "port_start": port_range[0],
            "port_end": port_range[1],
            "health": health.value,
            "heartbeat": clock.now() if health is HostHealth.READY else None,
        },
    ).scalar_one()
    if gpus:
        connection.execute(
            _INSERT_GPUS_SQL,
            {
                "host_id": host_id,
                "indexes": list(range(len(gpus))),
                "models": [gpu.model for gpu in gpus],
                "memories": [gpu.memory_bytes for gpu in gpus],
                "uuids": [gpu.device_uuid for gpu in gpus],
            },
        )
        counts = Counter(gpu.model for gpu in gpus)
        connection.execute(
            _INSERT_POOLS_SQL,
            {"host_id": host_id, "models": list(counts), "counts": list(counts.values())},
        )
    return host_id
