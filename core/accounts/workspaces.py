"""Workspace lifecycle operations that race with allocation."""

from __future__ import annotations

import uuid

from sqlalchemy import Connection, text

from remotegpu.core.environments.desired import set_desired_state
from remotegpu.core.environments.states import DesiredState
from remotegpu.core.platform.locks import LockNamespace, lock_key, xact_lock_all


def delete_workspace(
    connection: Connection, workspace_id: uuid.UUID, *, actor: uuid.UUID | None = None
) -> list[uuid.UUID]:
    """Soft-delete a workspace and ask each of its environments to be deleted. Returns them.

    Claims are *not* released here: the environments' pods may still run, so their GPUs and ports stay
    claimed until the reconciler has deleted the pods and releases them, as for any delete. Billing
    and audit rows stay.

    Runs under the workspace quota lock, the lock every allocation for the workspace holds, so an
    allocation either commits before (its environment is asked to go here) or sees the workspace
    deleted and refuses. Lock order as everywhere: the quota lock, then row locks.
    """
    xact_lock_all(connection, [lock_key(LockNamespace.QUOTA_WORKSPACE, workspace_id)])
    connection.execute(
        text("UPDATE workspaces SET deleted_at = now() WHERE id = :id AND deleted_at IS NULL"),
        {"id": workspace_id},
    )
    environments = connection.execute(
        text("SELECT id, desired_state FROM environments WHERE workspace_id = :id AND deleted_at IS NULL"),
        {"id": workspace_id},
    ).all()
    set_desired_state(
        connection,
        [row.id for row in environments if row.desired_state != DesiredState.DELETED.value],
        DesiredState.DELETED,
        actor=actor,
    )
    return sorted(row.id for row in environments)
