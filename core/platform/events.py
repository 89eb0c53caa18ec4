"""The event and audit log's one writer: one append-only `events` row per thing that happened.

Every event row is written here, in the caller's transaction (so it exists exactly when the change
does). Three bulk statements append their events inside the statement that makes the change, as a
data-modifying CTE, to save a round trip on a hot path: the reconciler's step apply and its bulk
admission and scheduling, `set_desired_state` (one event per environment changed), and inventory sync's
GPU presence update. They write the same columns with the same meaning.

`data` must never hold a secret: events are shown to workspace members.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import Connection, text

from remotegpu.core.environments.states import ActorKind
from remotegpu.core.platform.pipeline import Statement

_INSERT_SQL = text(
    """
    INSERT INTO events (actor_kind, actor_user_id, workspace_id, environment_id, host_id, kind, reason,
                        message, data)
    VALUES (:actor_kind, :actor, :workspace_id, :environment_id, :host_id, :kind, :reason, :message,
            CAST(:data AS jsonb))
    """
)


def event_statement(
    *,
    actor_kind: ActorKind,
    kind: str,
    reason: str,
    message: str = "",
    actor: uuid.UUID | None = None,
    workspace_id: uuid.UUID | None = None,
    environment_id: uuid.UUID | None = None,
    host_id: uuid.UUID | None = None,
    data: dict[str, Any] | None = None,
) -> Statement:
    """The statement that appends one event, in the caller's transaction (`connection.execute(*…)`), or
    with others in one round trip (`core.platform.pipeline`). `actor` is the user who caused it (None for the system or the
    reconciler); `kind` groups events (`api`, `host`, `quota`, `binding`, …), `reason` is the short
    machine-readable cause (`Cordoned`, `QuotaChanged`)."""
    return (
        _INSERT_SQL,
        {
            "actor_kind": actor_kind.value,
            "actor": actor,
            "workspace_id": workspace_id,
            "environment_id": environment_id,
            "host_id": host_id,
            "kind": kind,
            "reason": reason,
            "message": message,
            "data": json.dumps(data or {}, default=str),
        },
    )


def record_mutation(
    connection: Connection,
    actor: uuid.UUID,
    reason: str,
    message: str,
    *,
    workspace_id: uuid.UUID | None = None,
    environment_id: uuid.UUID | None = None,
    host_id: uuid.UUID | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """Append the audit event of a change a user asked for through the API (kind `api`)."""
    connection.execute(
        *event_statement(
            actor_kind=ActorKind.USER,
            kind="api",
            reason=reason,
            message=message,
            actor=actor,
            workspace_id=workspace_id,
            environment_id=environment_id,
            host_id=host_id,
            data=data,
        )
    )
