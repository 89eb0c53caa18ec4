"""The audit trail of API mutations: one append-only `events` row per change, naming who did it."""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import Connection, text

_INSERT_SQL = text(
    """
    INSERT INTO events (actor_kind, actor_user_id, workspace_id, environment_id, host_id, kind, reason,
                        message, data)
    VALUES ('user', :actor, :workspace_id, :environment_id, :host_id, 'api', :reason, :message,
            CAST(:data AS jsonb))
    """
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
    """Append an audit event in the caller's transaction (so it exists exactly when the change does).

    `data` must never hold a secret: events are shown to workspace members.
    """
    connection.execute(
        _INSERT_SQL,
        {
            "actor": actor,
            "workspace_id": workspace_id,
            "environment_id": environment_id,
            "host_id": host_id,
            "reason": reason,
            "message": message,
            "data": json.dumps(data or {}, default=str),
        },
    )
