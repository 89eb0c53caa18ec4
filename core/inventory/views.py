"""Hosts and GPUs as administrators read them: inventory, free capacity, cordon and health.

Only platform admins read the inventory: each function refuses anyone else (ForbiddenError) before it
looks anything up.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Connection, text

from remotegpu.core.accounts.users import Principal
from remotegpu.core.inventory.addresses import EFFECTIVE_ADDRESS_SQL
from remotegpu.core.platform.errors import NotFoundError
from remotegpu.core.platform.pagination import decode_cursor, page

_HOST_COLUMNS = f"""
    h.id, h.name, h.labels, h.address, h.address_source, h.public_address,
    {EFFECTIVE_ADDRESS_SQL} AS effective_address, h.health, h.cordoned, h.draining, h.cordon_reason, h.last_heartbeat_at,
    h.cpu_millis_allocatable, h.memory_bytes_allocatable, h.cpu_millis_claimed, h.memory_bytes_claimed,
    h.port_range_start, h.port_range_end, h.ports_claimed, h.created_at,
    (SELECT count(*) FROM gpus g WHERE g.host_id = h.id) AS gpus_total,
    h.gpus_claimed,
    (SELECT coalesce(sum(p.free), 0) FROM gpu_pools p WHERE p.host_id = h.id) AS gpus_free,
    (SELECT string_agg(DISTINCT g.model, ',') FROM gpus g WHERE g.host_id = h.id) AS gpu_models
"""


_GPU_COLUMNS = (
    "g.id, g.host_id, h.name AS host, g.index, g.device_uuid, g.model, g.memory_bytes, g.health,"
    " g.health_reason, g.foreign_use, c.environment_id"
)
_GPU_FROM = (
    "FROM gpus g JOIN hosts h ON h.id = g.host_id"
    " LEFT JOIN gpu_claims c ON c.gpu_id = g.id AND c.released_at IS NULL"
)


def list_hosts(
    connection: Connection, principal: Principal, *, limit: int, cursor: str | None
) -> tuple[list[Any], str | None]:
    """Live hosts by name: one page and the next page's cursor."""
    principal.require_admin()
    after = decode_cursor(cursor, (str,))
    rows = list(
        connection.execute(
            text(
                f"SELECT {_HOST_COLUMNS} FROM hosts h WHERE h.removed_at IS NULL"
                " AND (CAST(:after AS text) IS NULL OR h.name > :after) ORDER BY h.name LIMIT :limit"
            ),
            {"after": after[0] if after else None, "limit": limit + 1},
        )
    )
    return page(rows, limit, lambda row: (row.name,))


def get_host(connection: Connection, principal: Principal, host_id: uuid.UUID) -> Any:
    """One host; NotFoundError when there is none."""
    principal.require_admin()
    row = connection.execute(
        text(f"SELECT {_HOST_COLUMNS} FROM hosts h WHERE h.id = :id"), {"id": host_id}
    ).one_or_none()
    if row is None:
        raise NotFoundError(f"host {host_id} not found")
    return row


def list_gpus(connection: Connection, principal: Principal, host_id: uuid.UUID | None = None) -> list[Any]:
    """GPUs (of one host, or all), with the environment holding each, by host then index; NotFoundError
    for a host that does not exist."""
    principal.require_admin()
    if host_id is not None:
        get_host(connection, principal, host_id)
    return list(
        connection.execute(
            text(
                f"SELECT {_GPU_COLUMNS} {_GPU_FROM}"
                " WHERE h.removed_at IS NULL AND (CAST(:host AS uuid) IS NULL OR g.host_id = :host)"
                " ORDER BY h.name, g.index"
            ),
            {"host": host_id},
        )
    )


def get_gpu(connection: Connection, principal: Principal, gpu_id: uuid.UUID) -> Any:
    """One GPU as `list_gpus` shows it; NotFoundError when there is none."""
    principal.require_admin()
    row = connection.execute(
        text(f"SELECT {_GPU_COLUMNS} {_GPU_FROM} WHERE g.id = :id"), {"id": gpu_id}
    ).one_or_none()
    if row is None:
        raise NotFoundError(f"GPU {gpu_id} not found")
    return row
