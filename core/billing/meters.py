"""Opening and closing meters: what the reconciler observes, written in the same transaction as the phase.

- Compute (GPUs of the allocation's model, CPU cores, GiB of memory): a meter per resource opens when
  the environment is observed running and closes when it is observed not running (stopped, failed,
  deleted, its pod or host lost). A restart is a new spell with new meters.
- Storage: a meter per persistent volume opens when its volume is first provisioned and closes when the
  environment is deleted with its volumes (a stop keeps volumes, and they keep accruing).

Each function gives its statement (`core.platform.pipeline.Statement`), which the step's apply sends
with its guarded update in one round trip. Opening is idempotent (an open meter of the same resource and
subject is left alone), and so is closing (only open meters close). A close never ends a meter before its
cursor: a tick that metered up to a later moment first (it raced the observation) ends the spell there,
so intervals still tile it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy import text

from remotegpu.core.environments.derived import volume_specs
from remotegpu.core.environments.spec import EnvironmentSpec
from remotegpu.core.platform.pipeline import Statement

GIB = 1 << 30

_OPEN_COMPUTE_SQL = text(
    """
    INSERT INTO meters (environment_id, workspace_id, user_id, resource, subject, gpu_model, quantity,
                        started_at, metered_until)
    SELECT e.id, e.workspace_id, e.user_id, r.resource, '', r.model, r.quantity, :now, :now
      FROM environments e
      JOIN allocations a ON a.environment_id = e.id AND a.released_at IS NULL
     CROSS JOIN LATERAL (VALUES ('gpu', a.gpu_model, CAST(a.gpu_count AS numeric)),
                                ('cpu', NULL, a.cpu_millis / 1000.0),
                                ('memory', NULL, a.memory_bytes / 1073741824.0)) AS r(resource, model, quantity)
     WHERE e.id = :id AND r.quantity > 0
       AND NOT EXISTS (SELECT 1 FROM meters m WHERE m.environment_id = e.id AND m.resource = r.resource
                                                AND m.ended_at IS NULL)
    -- a spell that ended the instant this one starts (start, stop and start at one moment) has no
    -- interval yet: this spell continues it rather than colliding with its start
    ON CONFLICT (environment_id, resource, subject, started_at) DO UPDATE
       SET ended_at = NULL, quantity = EXCLUDED.quantity, gpu_model = EXCLUDED.gpu_model
    """
)
_CLOSE_SQL = text(
    """
    UPDATE meters SET ended_at = greatest(CAST(:now AS timestamptz), metered_until)
     WHERE environment_id = :id AND ended_at IS NULL AND (resource = 'storage') = :storage
    """
)
_OPEN_STORAGE_SQL = text(
    """
    INSERT INTO meters (environment_id, workspace_id, user_id, resource, subject, quantity, started_at,
                        metered_until)
    SELECT e.id, e.workspace_id, e.user_id, 'storage', v.name, v.gib, :now, :now
      FROM environments e, unnest(CAST(:names AS text[]), CAST(:gib AS numeric[])) AS v(name, gib)
     WHERE e.id = :id
       AND NOT EXISTS (SELECT 1 FROM meters m WHERE m.environment_id = e.id AND m.resource = 'storage'
                                                AND m.subject = v.name AND m.ended_at IS NULL)
    ON CONFLICT (environment_id, resource, subject, started_at) DO UPDATE SET ended_at = NULL,
        quantity = EXCLUDED.quantity
    """
)


def open_compute_meters(environment_id: uuid.UUID, now: dt.datetime) -> Statement:
    """The environment is observed running: its GPUs, CPU and memory start accruing at `now`."""
    return _OPEN_COMPUTE_SQL, {"id": environment_id, "now": now}


def close_compute_meters(environment_id: uuid.UUID, now: dt.datetime) -> Statement:
    """The environment is observed not running: its compute stops accruing at `now`."""
    return _CLOSE_SQL, {"id": environment_id, "now": now, "storage": False}


def open_storage_meters(
    environment_id: uuid.UUID, spec: EnvironmentSpec, now: dt.datetime
) -> list[Statement]:
    """Its volumes are provisioned: each one not accruing yet starts at `now`, for its size in GiB."""
    volumes: Sequence[tuple[str, Decimal]] = [
        (volume.name, Decimal(volume.size_bytes) / GIB) for volume in volume_specs(spec)
    ]
    if not volumes:
        return []
    names, gib = [n for n, _ in volumes], [g for _, g in volumes]
    return [(_OPEN_STORAGE_SQL, {"id": environment_id, "now": now, "names": names, "gib": gib})]


def close_storage_meters(environment_id: uuid.UUID, now: dt.datetime) -> Statement:
    """Its volumes are deleted: their storage stops accruing at `now`."""
    return _CLOSE_SQL, {"id": environment_id, "now": now, "storage": True}
