"""Host heartbeats: ask the cluster which nodes are Ready, and mark hosts down when heartbeats stop.

`health` is observed state only; an admin's cordon is never touched here, so a recovered host keeps it.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import text

from remotegpu.core.cluster.driver import ClusterUnavailableError, InventorySource
from remotegpu.core.inventory.sync import ObservedNode, record_foreign_usage, sync_inventory
from remotegpu.core.platform import clock
from remotegpu.reconciler.context import ReconcilerContext
from remotegpu.reconciler.leader import fence

_FOREIGN_STATE_SQL = text(
    """
    SELECT h.id, h.name, h.cpu_millis_foreign, h.memory_bytes_foreign, h.foreign_ports,
           coalesce(array_agg(g.device_uuid ORDER BY g.index) FILTER (WHERE g.foreign_use), '{}') AS devices,
           count(g.id) FILTER (WHERE g.foreign_use) AS gpus
      FROM hosts h LEFT JOIN gpus g ON g.host_id = h.id
     WHERE h.removed_at IS NULL
     GROUP BY h.id
    """
)


def _record_foreign_usage(ctx: ReconcilerContext, nodes: list[ObservedNode]) -> None:
    """Record foreign usage where it changed; one short transaction per host, its lock taken first."""
    with ctx.engine.connect() as connection:
        known = {row.name: row for row in connection.execute(_FOREIGN_STATE_SQL)}
    for node in nodes:
        row = known.get(node.name)
        if row is None:
            continue
        usage = node.foreign
        ports = sorted({(p["port"], p["protocol"]) for p in row.foreign_ports})
        same_devices = set(usage.gpu_devices) == {d for d in row.devices if d} if usage.gpu_devices else True
        unchanged = (
            row.cpu_millis_foreign == usage.cpu_millis
            and row.memory_bytes_foreign == usage.memory_bytes
            and ports == sorted(set(usage.host_ports))
            and row.gpus == usage.gpus
            and same_devices
        )
        if unchanged:
            continue
        with ctx.engine.begin() as connection:
            record_foreign_usage(connection, row.id, usage)
            fence(connection, ctx.shard, ctx.epoch)


def _ready_hosts(ctx: ReconcilerContext) -> list[uuid.UUID]:
    """Ids of the hosts whose node the driver, asked node by node, says is Ready (no session open while
    it is asked); none when the API is out, which is not a node outage: heartbeats age, the threshold
    decides."""
    with ctx.engine.connect() as connection:
        hosts = connection.execute(text("SELECT id, name FROM hosts WHERE removed_at IS NULL")).all()
    try:
        return [host.id for host in hosts if ctx.cluster.node_ready(host.name)]
    except ClusterUnavailableError:
        return []


def sync_host_health(ctx: ReconcilerContext) -> None:
    """Record a heartbeat for every Ready node, then mark hosts with stale heartbeats down.

    A driver that lists its nodes (Kubernetes) also keeps the inventory in sync: new nodes become hosts
    with their GPUs, vanished ones are marked removed.
    """
    nodes: list[ObservedNode] | None = None
    if isinstance(ctx.cluster, InventorySource):
        try:
            nodes = ctx.cluster.list_nodes()  # no session open here
        except ClusterUnavailableError:
            nodes = None
        if nodes is not None:
            with ctx.engine.begin() as connection:
                sync_inventory(connection, nodes)
                fence(connection, ctx.shard, ctx.epoch)
            _record_foreign_usage(ctx, nodes)
    # a listing driver's inventory sync wrote health and heartbeats (each host row once a sync)
    ready = [] if isinstance(ctx.cluster, InventorySource) else _ready_hosts(ctx)
    now = clock.now()
    stale_before = now - dt.timedelta(seconds=ctx.settings.host_down_after_seconds)
    with ctx.engine.begin() as connection:
        if ready:
            connection.execute(
                text("UPDATE hosts SET health = 'ready', last_heartbeat_at = :now WHERE id = ANY(:ids)"),
                {"now": now, "ids": ready},
            )
        connection.execute(
            text(
                "UPDATE hosts SET health = 'down' WHERE health <> 'down' AND removed_at IS NULL"
                " AND (last_heartbeat_at IS NULL OR last_heartbeat_at < :stale_before)"
            ),
            {"stale_before": stale_before},
        )
        fence(connection, ctx.shard, ctx.epoch)
