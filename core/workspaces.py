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

    Lock order as everywhere: the quota lock, then every host lock at once (sorted), then row locks.
    Under the quota lock no new claim can appear for this workspace, so the host list is complete.
    """
    xact_lock_all(connection, [lock_key(LockNamespace.QUOTA_WORKSPACE, workspace_id)])
    hosts = connection.execute(
        text(
            "SELECT DISTINCT a.host_id FROM allocations a JOIN environments e ON e.id = a.environment_id"
            " WHERE e.workspace_id = :id AND a.released_at IS NULL"
        ),
        {"id": workspace_id},
    ).scalars()
    xact_lock_all(connection, [lock_key(LockNamespace.HOST, host) for host in hosts])
    environments = sorted(
        connection.execute(
            text("SELECT id FROM environments WHERE workspace_id = :id AND deleted_at IS NULL"),
            {"id": workspace_id},
        ).scalars()
    )
    for environment_id in environments:
        release(connection, environment_id)
    connection.execute(
        text("UPDATE workspaces SET deleted_at = now() WHERE id = :id AND deleted_at IS NULL"),
        {"id": workspace_id},
    )
    connection.execute(
        text("UPDATE environments SET desired_state = :deleted, updated_at = now() WHERE id = ANY(:ids)"),
        {"ids": environments, "deleted": DesiredState.DELETED.value},
    )
    return environments
