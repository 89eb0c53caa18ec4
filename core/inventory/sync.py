"""Registering hosts and their GPUs, with the `gpu_pools` counters placement reads.

The cluster inventory sync calls `register_host` for new nodes; tests and benchmarks seed with it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from sqlalchemy import Connection, text

from remotegpu.core.capacity.capacity_sql import GPU_IN_POOL, GPU_UNCLAIMED
from remotegpu.core.environments.states import HostHealth
from remotegpu.core.inventory.gpu_report import HEALTH_REASON_PREFIX
from remotegpu.core.platform import clock


@dataclass(frozen=True)
class GpuDevice:
    """One GPU as the node reports it."""

    model: str
    memory_bytes: int | None = None
    device_uuid: str | None = None


_INSERT_HOST_SQL = text(
    """
    INSERT INTO hosts (name, labels, cpu_millis_allocatable, memory_bytes_allocatable,
                       port_range_start, port_range_end, health, last_heartbeat_at, address, address_source)
    VALUES (:name, CAST(:labels AS jsonb), :cpu, :memory, :port_start, :port_end, :health, :heartbeat,
            :address, :address_source)
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
    address: str | None = None,
    address_source: str | None = None,
) -> uuid.UUID:
    """Insert a host with its GPUs (indexes in the given order) and their pools; returns the host id.

    `address` is the observed address users reach it by (None: the node name stands in)."""
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
            "address": address,
            "address_source": address_source,
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


_UPDATE_HOSTS_SQL = text(
    """
    UPDATE hosts h SET health = n.health, cpu_millis_allocatable = n.cpu, memory_bytes_allocatable = n.memory,
                       labels = n.labels, address = n.address, address_source = n.address_source,
                       last_heartbeat_at = CASE WHEN n.ready THEN :now ELSE h.last_heartbeat_at END,
                       removed_at = NULL, updated_at = now()
      FROM jsonb_to_recordset(CAST(:nodes AS jsonb))
           AS n(name text, health text, ready boolean, cpu bigint, memory bigint, labels jsonb, address text,
                address_source text)
     WHERE h.name = n.name
       AND (h.health IS DISTINCT FROM n.health OR h.cpu_millis_allocatable <> n.cpu
            OR h.memory_bytes_allocatable <> n.memory OR h.labels <> n.labels OR h.removed_at IS NOT NULL
            OR h.address IS DISTINCT FROM n.address OR h.address_source IS DISTINCT FROM n.address_source
            OR (n.ready AND (h.last_heartbeat_at IS NULL OR h.last_heartbeat_at < :refresh_before)))
    """
)


@dataclass(frozen=True)
class ForeignUsage:
    """What pods that are not RemoteGPU's use on a node."""

    gpus: int = 0
    gpu_devices: tuple[str, ...] = ()
    """Device UUIDs of those GPUs when the node reports them."""
    cpu_millis: int = 0
    memory_bytes: int = 0
    host_ports: tuple[tuple[int, str], ...] = ()


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
    foreign: ForeignUsage = field(default_factory=ForeignUsage)
    address: str | None = None
    """The address users reach the node by (see `core.inventory.addresses.node_address`)."""
    address_source: str | None = None
    """Where `address` came from: the annotation, ExternalIP, InternalIP or (a guess) Hostname."""
    gpu_reported: bool = False
    """Whether RemoteGPU's host agent reports this node's GPUs (`core.inventory.gpu_report`): only then
    does the report's health count, both ways."""
    unhealthy_gpus: tuple[tuple[str, str], ...] = ()
    """(device UUID, reason) of each GPU the agent reports unhealthy."""


_FOREIGN_HOST_SQL = text(
    """
    UPDATE hosts SET cpu_millis_foreign = :cpu, memory_bytes_foreign = :memory,
                     foreign_ports = CAST(:ports AS jsonb), updated_at = now()
     WHERE id = :host AND (cpu_millis_foreign <> :cpu OR memory_bytes_foreign <> :memory
                           OR foreign_ports <> CAST(:ports AS jsonb))
    """
)
# Devices a foreign pod holds: the reported ones; without reports, the highest unclaimed indexes.
_FOREIGN_GPUS_SQL = text(
    f"""
    WITH wanted AS (
        SELECT g.id FROM gpus g
         WHERE g.host_id = :host AND g.device_uuid = ANY(CAST(:devices AS text[]))
        UNION
        SELECT id FROM (
            SELECT g.id FROM gpus g
             WHERE g.host_id = :host AND cardinality(CAST(:devices AS text[])) = 0
               AND {GPU_UNCLAIMED}
             ORDER BY g.index DESC LIMIT :count
        ) guessed
    )
    UPDATE gpus g SET foreign_use = (g.id IN (SELECT id FROM wanted)), updated_at = now()
     WHERE g.host_id = :host AND g.foreign_use IS DISTINCT FROM (g.id IN (SELECT id FROM wanted))
    RETURNING g.id
    """
)
_RECOUNT_POOLS_SQL = text(
    f"""
    UPDATE gpu_pools p SET total = x.total, free = x.free
      FROM (SELECT g.model,
                   count(*) FILTER (WHERE {GPU_IN_POOL}) AS total,
                   count(*) FILTER (WHERE {GPU_IN_POOL} AND {GPU_UNCLAIMED}) AS free
              FROM gpus g WHERE g.host_id = :host GROUP BY g.model) x
     WHERE p.host_id = :host AND p.model = x.model
    """
)


def record_foreign_usage(connection: Connection, host_id: uuid.UUID, usage: ForeignUsage) -> bool:
    """Record what foreign pods use on a host, under the host's lock; True when GPUs changed hands.

    Runs in its own transaction: the host lock comes first (lock order), then the rows. GPUs a foreign
    pod holds leave the free pool; GPUs it gave back return to it.
    """
    import json

    from remotegpu.core.platform.locks import LockNamespace, lock_key, xact_lock_all

    xact_lock_all(connection, [lock_key(LockNamespace.HOST, host_id)])
    ports = [{"port": port, "protocol": protocol} for port, protocol in sorted(set(usage.host_ports))]
    connection.execute(
        _FOREIGN_HOST_SQL,
        {"host": host_id, "cpu": usage.cpu_millis, "memory": usage.memory_bytes, "ports": json.dumps(ports)},
    )
    changed = connection.execute(
        _FOREIGN_GPUS_SQL, {"host": host_id, "devices": list(usage.gpu_devices), "count": usage.gpus}
    ).all()
    if changed:
        connection.execute(_RECOUNT_POOLS_SQL, {"host": host_id})
    return bool(changed)


# GPUs of known nodes whose presence changed: reported devices by UUID when the node reports them,
# else by index (a node reporting N GPUs has indexes 0..N-1).
_GPU_PRESENCE_SQL = text(
    """
    WITH n AS (
        SELECT * FROM jsonb_to_recordset(CAST(:nodes AS jsonb)) AS n(name text, gpu_count int, uuids jsonb)
    ), observed AS (
        SELECT g.id, g.host_id, g.index, g.health,
               CASE WHEN jsonb_array_length(n.uuids) > 0 AND g.device_uuid IS NOT NULL
                    THEN n.uuids @> to_jsonb(g.device_uuid) ELSE g.index < n.gpu_count END AS present
          FROM gpus g JOIN hosts h ON h.id = g.host_id JOIN n ON n.name = h.name
    )
    SELECT id, host_id, index, present FROM observed
     WHERE (health = 'lost') = present
     ORDER BY host_id, index
    """
)
_SET_GPU_PRESENCE_SQL = text(
    """
    WITH changed AS (
        UPDATE gpus g SET health = CASE WHEN x.present THEN 'healthy' ELSE 'lost' END,
                          health_reason = CASE WHEN x.present THEN NULL ELSE 'no longer reported by its node' END,
                          updated_at = now()
          FROM unnest(CAST(:ids AS uuid[]), CAST(:present AS boolean[])) AS x(id, present)
         WHERE g.id = x.id AND (g.health = 'lost') = x.present
        RETURNING g.id, g.host_id, g.index, x.present
    )
    INSERT INTO events (actor_kind, host_id, kind, reason, message, data)
    SELECT 'system', host_id, 'host', CASE WHEN present THEN 'GpuFound' ELSE 'GpuLost' END,
           'GPU ' || index || CASE WHEN present THEN ' reported again' ELSE ' no longer reported by its node' END,
           jsonb_build_object('gpu', id::text)
      FROM changed
    RETURNING host_id
    """
)


# GPUs whose health the agent's report changes: reported unhealthy while healthy; reported healthy
# while unhealthy by an earlier report (an admin's own mark is never cleared here). A lost GPU is a
# candidate too, for its host's lock: presence may find it again in the same pass.
_GPU_HEALTH_SQL = text(
    f"""
    WITH n AS (
        SELECT * FROM jsonb_to_recordset(CAST(:gpus AS jsonb)) AS n(name text, device_uuid text, reason text)
    )
    SELECT g.id, g.host_id, g.index, n.reason FROM gpus g
      JOIN hosts h ON h.id = g.host_id
      JOIN n ON n.name = h.name AND n.device_uuid = g.device_uuid
     WHERE (n.reason IS NOT NULL AND g.health = 'healthy')
        OR (n.reason IS NULL AND g.health = 'unhealthy' AND starts_with(g.health_reason, '{HEALTH_REASON_PREFIX}'))
        OR (g.health = 'lost' AND NOT :settled)
     ORDER BY g.host_id, g.index
    """
)
_SET_GPU_HEALTH_SQL = text(
    """
    WITH changed AS (
        UPDATE gpus g SET health = CASE WHEN x.reason IS NULL THEN 'healthy' ELSE 'unhealthy' END,
                          health_reason = x.reason, updated_at = now()
          FROM unnest(CAST(:ids AS uuid[]), CAST(:reasons AS text[])) AS x(id, reason)
         WHERE g.id = x.id AND g.health <> 'lost'
        RETURNING g.id, g.host_id, g.index, x.reason
    )
    INSERT INTO events (actor_kind, host_id, kind, reason, message, data)
    SELECT 'system', host_id, 'host', CASE WHEN reason IS NULL THEN 'GpuHealthy' ELSE 'GpuUnhealthy' END,
           'GPU ' || index || CASE WHEN reason IS NULL THEN ' reported healthy again' ELSE ' ' || reason END,
           jsonb_build_object('gpu', id::text)
      FROM changed
    RETURNING host_id
    """
)


def _json(rows: list[dict[str, Any]]) -> str:
    """Rows as one JSON document for `jsonb_to_recordset` (text: bytes would be sent as bytea)."""
    return msgspec.json.encode(rows).decode()


def _sync_gpu_state(connection: Connection, nodes: Sequence[ObservedNode]) -> None:
    """Mark GPUs their Ready node no longer reports `lost` (out of the pool, like unhealthy ones; the
    reconciler moves an environment holding one elsewhere) and those it reports again healthy; then,
    where the host agent reports health, mark the GPUs it reports unhealthy `unhealthy` (out of the
    pool; an environment holding one keeps it until it stops) and those it reports healthy again
    healthy. A NotReady node is left alone: the host-down path handles it.

    Under the host locks, all taken at once in a fixed order before any row lock of the sync (lock
    order): a claim on a GPU leaving the pool either committed before or sees it out of the pool.
    """
    from remotegpu.core.platform.locks import LockNamespace, lock_key, xact_lock_all

    ready = [node for node in nodes if node.ready]  # a NotReady node's report is no evidence
    # Each statement takes its rows as one JSON document, encoded by msgspec: thousands of array
    # elements (16,000 GPUs on 2,000 nodes, every host sync) took psycopg's Python dumpers a while, and
    # the standard library's encoder a third of the sync's own Python time.
    presence = {
        "nodes": _json(
            [
                {"name": node.name, "gpu_count": node.gpu_count, "uuids": list(node.gpu_uuids)}
                for node in ready
            ]
        )
    }
    reported = [node for node in ready if node.gpu_reported]
    gpus = []
    for node in reported:
        reported_unwell = dict(node.unhealthy_gpus)
        gpus += [
            {"name": node.name, "device_uuid": device, "reason": reported_unwell.get(device)}
            for device in node.gpu_uuids
        ]
    health = {"gpus": _json(gpus)}
    hosts = {row.host_id for row in connection.execute(_GPU_PRESENCE_SQL, presence)}
    if reported:
        hosts |= {row.host_id for row in connection.execute(_GPU_HEALTH_SQL, {**health, "settled": False})}
    if not hosts:
        return
    xact_lock_all(connection, [lock_key(LockNamespace.HOST, host) for host in sorted(hosts)])
    # Read again under the locks (a new statement, a new snapshot).
    changed = connection.execute(_GPU_PRESENCE_SQL, presence).all()
    connection.execute(
        _SET_GPU_PRESENCE_SQL,
        {"ids": [row.id for row in changed], "present": [row.present for row in changed]},
    )
    recount = {row.host_id for row in changed}
    if reported:
        unwell = [
            row
            for row in connection.execute(_GPU_HEALTH_SQL, {**health, "settled": True})
            if row.host_id in hosts
        ]
        connection.execute(
            _SET_GPU_HEALTH_SQL,
            {"ids": [row.id for row in unwell], "reasons": [row.reason for row in unwell]},
        )
        recount |= {row.host_id for row in unwell}
    for host in sorted(recount):
        connection.execute(_RECOUNT_POOLS_SQL, {"host": host})


def sync_inventory(connection: Connection, nodes: Sequence[ObservedNode]) -> list[uuid.UUID]:
    """Register nodes not seen before (with their GPUs) and refresh the others; returns new host ids.

    Health follows the node's Ready condition; an admin's cordon is never touched. A GPU the node no
    longer reports is marked lost, and healthy again when it comes back; one the host agent reports
    unhealthy is marked unhealthy, and healthy again when the agent says so. A node that left the cluster
    is marked removed (its row stays for history).
    """
    _sync_gpu_state(connection, nodes)
    added = []
    now = clock.now()
    # One statement for every known node; a row is written only when something changed or its
    # heartbeat is older than a few seconds, so a large cluster costs little per sync.
    connection.execute(
        _UPDATE_HOSTS_SQL,
        {
            "nodes": _json(
                [
                    {
                        "name": node.name,
                        "health": (HostHealth.READY if node.ready else HostHealth.DOWN).value,
                        "ready": node.ready,
                        "cpu": node.cpu_millis,
                        "memory": node.memory_bytes,
                        "labels": node.labels,
                        "address": node.address,
                        "address_source": node.address_source,
                    }
                    for node in nodes
                ]
            ),
            "now": now,
            "refresh_before": now - dt.timedelta(seconds=4),
        },
    )
    known = set(connection.execute(text("SELECT name FROM hosts")).scalars())
    for node in nodes:
        if node.name not in known:
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
                    address=node.address,
                    address_source=node.address_source,
                )
            )
    if added:  # a new node's report may already mark some of its GPUs unhealthy
        _sync_gpu_state(connection, [node for node in nodes if node.name not in known])
    connection.execute(
        text("UPDATE hosts SET removed_at = :now WHERE removed_at IS NULL AND NOT (name = ANY(:names))"),
        {"now": now, "names": [node.name for node in nodes]},
    )
    return added
