"""Admin operations on hosts and GPUs that race with allocation and must stay correct.

Each takes the host's advisory lock (blocking; it holds no other advisory lock), so it is serialised
with every allocation and release on that host: after a cordon commits, no allocation can place there;
after a GPU is marked unhealthy, it is never picked again and leaves the free pool exactly once.
"""

from __future__ import annotations

import uuid

from sqlalchemy import Connection, text

from remotegpu.core.environments.desired import set_desired_state
from remotegpu.core.environments.states import ActorKind, DesiredState, GpuHealth
from remotegpu.core.platform.events import event_statement
from remotegpu.core.platform.locks import LockNamespace, lock_key, xact_lock_all


def _lock_host(connection: Connection, host_id: uuid.UUID) -> None:
    xact_lock_all(connection, [lock_key(LockNamespace.HOST, host_id)])


def _event(
    connection: Connection, host_id: uuid.UUID, reason: str, message: str, data: dict[str, object]
) -> None:
    connection.execute(
        *event_statement(
            actor_kind=ActorKind.SYSTEM,
            kind="host",
            reason=reason,
            message=message,
            host_id=host_id,
            data=data,
        )
    )


def cordon_host(connection: Connection, host_id: uuid.UUID, reason: str = "") -> None:
    """No new placements on the host; what runs there keeps running."""
    _lock_host(connection, host_id)
    connection.execute(
        text("UPDATE hosts SET cordoned = true, cordon_reason = :reason, updated_at = now() WHERE id = :id"),
        {"id": host_id, "reason": reason or None},
    )
    _event(connection, host_id, "Cordoned", reason or "host cordoned", {})


def uncordon_host(connection: Connection, host_id: uuid.UUID) -> None:
    """Allow placements on the host again (also ends a drain)."""
    _lock_host(connection, host_id)
    connection.execute(
        text(
            "UPDATE hosts SET cordoned = false, draining = false, cordon_reason = NULL, updated_at = now()"
            " WHERE id = :id"
        ),
        {"id": host_id},
    )
    _event(connection, host_id, "Uncordoned", "host uncordoned", {})


def drain_host(connection: Connection, host_id: uuid.UUID, reason: str = "") -> list[uuid.UUID]:
    """Cordon the host and ask every environment placed on it to stop; returns those environments.

    The reconciler stops them (releasing their claims) as it does for a user's stop.
    """
    _lock_host(connection, host_id)
    connection.execute(
        text(
            "UPDATE hosts SET cordoned = true, draining = true, cordon_reason = :reason, updated_at = now()"
            " WHERE id = :id"
        ),
        {"id": host_id, "reason": reason or "drained"},
    )
    running = connection.execute(
        text(
            "SELECT e.id FROM allocations a JOIN environments e ON e.id = a.environment_id"
            " WHERE a.host_id = :id AND a.released_at IS NULL AND e.desired_state = :running"
        ),
        {"id": host_id, "running": DesiredState.RUNNING.value},
    ).scalars()
    stopped = set_desired_state(
        connection, list(running), DesiredState.STOPPED, replacing=DesiredState.RUNNING
    )
    _event(
        connection, host_id, "Drained", reason or "host drained", {"environments": [str(e) for e in stopped]}
    )
    return stopped


def set_public_address(connection: Connection, host_id: uuid.UUID, address: str | None) -> bool:
    """Set (or, with None, clear) the admin's override of the host's address; False when unchanged.

    The one writer of `hosts.public_address`; the caller has validated `address` and records the audit
    event. No host lock and no `host` event: the address plays no part in allocation or its audit.
    """
    changed = connection.execute(
        text(
            "UPDATE hosts SET public_address = CAST(:address AS text), updated_at = now()"
            " WHERE id = :id AND public_address IS DISTINCT FROM CAST(:address AS text)"
        ),
        {"id": host_id, "address": address},
    )
    return bool(changed.rowcount)


_SET_GPU_HEALTH_SQL = text(
    """
    WITH old AS (
        SELECT g.id, g.host_id, g.model, g.health, g.foreign_use,
               EXISTS (SELECT 1 FROM gpu_claims c WHERE c.gpu_id = g.id AND c.released_at IS NULL) AS claimed
          FROM gpus g WHERE g.id = :gpu_id
    ), changed AS (
        UPDATE gpus g SET health = :health, health_reason = :reason, updated_at = now()
          FROM old WHERE g.id = old.id AND old.health <> :health
        RETURNING g.id
    ), pool AS (
        -- a GPU enters or leaves the pool once: `total` always, `free` only when it is not claimed;
        -- between two states out of the pool (unhealthy, lost) nothing moves
        UPDATE gpu_pools p
           SET total = p.total + d.delta,
               free = p.free + CASE WHEN old.claimed THEN 0 ELSE d.delta END
          FROM old, changed,
               (SELECT (:health = 'healthy')::int - (old.health = 'healthy')::int AS delta FROM old) d
         WHERE p.host_id = old.host_id AND p.model = old.model AND NOT old.foreign_use AND d.delta <> 0
        RETURNING 1
    )
    SELECT old.host_id, (SELECT count(*) FROM changed) AS changed FROM old
    """
)


def set_gpu_health(connection: Connection, gpu_id: uuid.UUID, health: GpuHealth, reason: str = "") -> bool:
    """Mark a GPU healthy or unhealthy; returns False when it already was. Unknown GPU: `LookupError`."""
    host_id = connection.execute(text("SELECT host_id FROM gpus WHERE id = :id"), {"id": gpu_id}).scalar()
    if host_id is None:
        raise LookupError(f"GPU {gpu_id} does not exist")
    _lock_host(connection, host_id)
    row = connection.execute(
        _SET_GPU_HEALTH_SQL, {"gpu_id": gpu_id, "health": health.value, "reason": reason or None}
    ).one()
    if row.changed:
        _event(connection, host_id, f"Gpu{health.value.capitalize()}", reason, {"gpu": str(gpu_id)})
    return bool(row.changed)
