"""A workspace's storage quota, charged by datasets: their declared size counts from creation to deletion.

Environments' volumes and datasets share one counter (`resource_quotas.used_storage_bytes`), changed
only under the workspace's quota advisory lock (the global lock order puts it before every row lock).
A dataset's charge is written in the transaction that inserts its row and given back in the one that
deletes it, so it is counted exactly once whatever fails in between.
"""

from __future__ import annotations

import uuid

from sqlalchemy import Connection, text

from remotegpu.core.platform.errors import ConflictError
from remotegpu.core.platform.locks import LockNamespace, lock_key, xact_lock
from remotegpu.core.platform.quantities import format_bytes

_USAGE_SQL = text("SELECT max_storage_bytes, used_storage_bytes FROM resource_quotas WHERE workspace_id = :w")
_CHARGE_SQL = text(
    """
    INSERT INTO resource_quotas (workspace_id, used_storage_bytes) VALUES (:w, :bytes)
    ON CONFLICT (workspace_id) DO UPDATE
       SET used_storage_bytes = resource_quotas.used_storage_bytes + EXCLUDED.used_storage_bytes,
           updated_at = now()
    """
)
_RELEASE_SQL = text(
    "UPDATE resource_quotas SET used_storage_bytes = used_storage_bytes - :bytes, updated_at = now()"
    " WHERE workspace_id = :w"
)


def charge_storage(connection: Connection, workspace_id: uuid.UUID, workspace: str, size_bytes: int) -> None:
    """Count `size_bytes` against the workspace's storage quota; ConflictError naming the limit when it
    would go over."""
    xact_lock(connection, lock_key(LockNamespace.QUOTA_WORKSPACE, workspace_id))
    row = connection.execute(_USAGE_SQL, {"w": workspace_id}).one_or_none()
    limit, used = (None, 0) if row is None else (row.max_storage_bytes, row.used_storage_bytes)
    if limit is not None and used + size_bytes > limit:
        raise ConflictError(
            f"workspace {workspace!r} has a storage quota of {format_bytes(limit)}"
            f" (max_storage_bytes = {limit}), {format_bytes(used)} of it"
            f" in use; this dataset needs {format_bytes(size_bytes)}. Delete datasets or volumes, or ask a"
            " platform admin to raise the quota",
            "$.size_bytes",
        )
    connection.execute(_CHARGE_SQL, {"w": workspace_id, "bytes": size_bytes})


def release_storage(connection: Connection, workspace_id: uuid.UUID, size_bytes: int) -> None:
    """Give a deleted dataset's charge back (in the transaction that deletes its row)."""
    xact_lock(connection, lock_key(LockNamespace.QUOTA_WORKSPACE, workspace_id))
    connection.execute(_RELEASE_SQL, {"w": workspace_id, "bytes": size_bytes})
