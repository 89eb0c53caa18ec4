"""Workspace lifecycle operations that race with allocation."""

from __future__ import annotations

import uuid

from sqlalchemy import Connection, text

from remotegpu.core.allocation import release
from remotegpu.core.locks import LockNamespace, lock_key, xact_lock_all
from remotegpu.core.states import DesiredState


def delete_workspace(connection: Connection, workspace_id: uuid.UUID) -> list[uuid.UUID]:
    """Soft-delete a workspace: its environments are asked to go away and their claims are released.

    Runs under the workspace quota lock, the lock every allocation for the workspace holds, so an
    allocation either commits before (and is released here) or sees the workspace deleted and refuses.
    Billing and audit rows stay. Returns the affected environments.
    """
    xact_lock_all(connection, [lock_key(LockNamespace.QUOTA_WORKSPACE, workspace_id)])
    connection.execute(
        text("UPDATE workspaces SET deleted_at = now() WHERE id = :id AND deleted_at IS NULL"),
        {"id": workspace_id},
    )
    environments = list(
        connection.execute(
            text(
                "UPDATE environments SET desired_state = :deleted, updated_at = now()"
                " WHERE workspace_id = :id AND deleted_at IS NULL RETURNING id"
            ),
            {"id": workspace_id, "deleted": DesiredState.DELETED.value},
        ).scalars()
    )
    for environment_id in sorted(environments):
        release(connection, environment_id)
    return environments
