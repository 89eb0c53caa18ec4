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


_UPDATE_HOST_SQL = text(
    """
    UPDATE hosts SET health = :health, cpu_millis_allocatable = :cpu, memory_bytes_allocatable = :memory,
                     labels = CAST(:labels AS jsonb),
                     last_heartbeat_at = CASE WHEN :ready THEN :now ELSE last_heartbeat_at END,
                     removed_at = NULL, updated_at = now()
     WHERE name = :name
    RETURNING id
    """
)


@dataclass(frozen=True)
class ObservedNode:
    """A node as the cluster reports it (see `KubernetesCluster.list_nodes`)."""

    name: str
    ready: bool
    gpu_count: int
    gpu_model: str
    gpu_memory_bytes: int | None
    gpu_uuids: tuple[str, ...]
    cpu_millis: int
    memory_bytes: int
    labels: dict[str, str]


def sync_inventory(connection: Connection, nodes: Sequence[ObservedNode]) -> list[uuid.UUID]:
    """Register nodes not seen before (with their GPUs) and refresh the others; returns new host ids.

    Health follows the node's Ready condition; an admin's cordon is never touched. A node that left
    the cluster is marked removed (its row stays for history).
    """
    import json

    added = []
    now = clock.now()
    for node in nodes:
        updated = connection.execute(
            _UPDATE_HOST_SQL,
            {
                "name": node.name,
                "health": (HostHealth.READY if node.ready else HostHealth.DOWN).value,
                "ready": node.ready,
                "cpu": node.cpu_millis,
                "memory": node.memory_bytes,
                "labels": json.dumps(node.labels),
                "now": now,
            },
        ).first()
        if updated is None:
            devices = [
                GpuDevice(
                    node.gpu_model,
                    node.gpu_memory_bytes,
                    node.gpu_uuids[i] if i < len(node.gpu_uuids) else None,
                )
                for i in range(node.gpu_count)
            ]
            added.append(
                register_host(
                    connection,
                    node.name,
                    devices,
                    cpu_millis=node.cpu_millis,
                    memory_bytes=node.memory_bytes,
                    health=HostHealth.READY if node.ready else HostHealth.DOWN,
                    labels=node.labels,
                )
            )
    connection.execute(
        text("UPDATE hosts SET removed_at = :now WHERE removed_at IS NULL AND NOT (name = ANY(:names))"),
        {"now": now, "names": [node.name for node in nodes]},
    )
    return added
