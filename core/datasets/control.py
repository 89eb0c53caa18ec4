"""What users may do to datasets: create, list, read, delete, retry; with the role checks, the quota
charge and the audit event in the caller's transaction.

Members create datasets in their workspaces; the creator and the workspace's admins change or delete
one; every member reads them. Another workspace's dataset reads as one that does not exist. A dataset
that an environment (not deleted) names under `datasets:` cannot be deleted: the answer names them.
The rows are written only here and in `core.datasets.uploads`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from remotegpu.core.accounts.membership import WorkspaceAccess, workspace_access
from remotegpu.core.accounts.users import Principal
from remotegpu.core.datasets.quota import charge_storage, release_storage
from remotegpu.core.datasets.s3_urls import S3Location
from remotegpu.core.datasets.states import DatasetSource, DatasetStatus, StorageKind
from remotegpu.core.platform.errors import ConflictError, ForbiddenError, InvalidInputError, NotFoundError
from remotegpu.core.platform.events import record_mutation
from remotegpu.core.platform.locks import LockNamespace, lock_key, xact_lock
from remotegpu.policies.roles import Action, may_operate_environment

DATASET_COLUMNS = (
    "d.id, d.workspace_id, d.name, d.created_by, d.source, d.storage, d.source_url, d.volume, d.file_name,"
    " d.size_bytes, d.checksum, d.status, d.reason, d.retryable, d.received_bytes, d.upload_id,"
    " d.created_at, d.updated_at, d.ready_at"
)


@dataclass(frozen=True)
class NewDataset:
    """A dataset to create; which fields it needs depends on its source (checked by `create_dataset`)."""

    name: str
    workspace: str | uuid.UUID
    source: DatasetSource
    size_bytes: int | None = None
    checksum: str | None = None
    file_name: str | None = None
    location: S3Location | None = None
    """An S3 source's bucket and prefix, already checked against the bucket (size listed)."""
    volume: str | None = None


def require_may_create(connection: Connection, principal: Principal, workspace: str | uuid.UUID) -> None:
    """NotFoundError or ForbiddenError unless the caller may create datasets in the workspace (checked
    before anything outside is asked on their behalf; `create_dataset` checks again)."""
    workspace_access(connection, principal, workspace).require(Action.CREATE_ENVIRONMENT)


def create_dataset(
    connection: Connection, principal: Principal, new: NewDataset, storage: StorageKind | None
) -> Any:
    """Insert a dataset and charge its size to the workspace's storage quota. Uploads start `uploading`
    (ready once their bytes arrive and match), S3 and volume sources are `ready` at once."""
    access = workspace_access(connection, principal, new.workspace)
    access.require(Action.CREATE_ENVIRONMENT)
    size = new.size_bytes or 0
    status = DatasetStatus.UPLOADING if new.source is DatasetSource.UPLOAD else DatasetStatus.READY
    charge_storage(connection, access.id, access.name, size)
    try:
        with connection.begin_nested():
            row = connection.execute(
                text(
                    "INSERT INTO datasets AS d (workspace_id, name, created_by, source, storage, source_url, volume,"
                    " file_name, size_bytes, checksum, status, ready_at) VALUES (:w, :name, :user, :source,"
                    " :storage, :url, :volume, :file, :size, :checksum, CAST(:status AS text),"
                    f" CASE WHEN CAST(:status AS text) = 'ready' THEN now() END) RETURNING {DATASET_COLUMNS}"
                ),
                {
                    "w": access.id,
                    "name": new.name,
                    "user": principal.user_id,
                    "source": new.source.value,
                    "storage": storage.value if storage and new.source is DatasetSource.UPLOAD else None,
                    "url": new.location.url if new.location else None,
                    "volume": new.volume,
                    "file": new.file_name,
                    "size": size,
                    "checksum": new.checksum,
                    "status": status.value,
                },
            ).one()
    except IntegrityError:
        raise ConflictError(
            f"workspace {access.name!r} already has a dataset named {new.name!r}; choose another name, or"
            " delete that one first (`remotegpu datasets delete`)",
            "$.name",
        ) from None
    record_mutation(
        connection,
        principal.user_id,
        "DatasetCreated",
        f"dataset {new.name} created",
        workspace_id=access.id,
        data={"dataset_id": str(row.id), "source": new.source.value, "size_bytes": size},
    )
    return row


def list_datasets(connection: Connection, principal: Principal, workspace: str | uuid.UUID) -> list[Any]:
    """The workspace's datasets by name."""
    access = workspace_access(connection, principal, workspace)
    return list(
        connection.execute(
            text(f"SELECT {DATASET_COLUMNS} FROM datasets d WHERE d.workspace_id = :w ORDER BY d.name"),
            {"w": access.id},
        )
    )


def get_dataset(
    connection: Connection, principal: Principal, dataset_id: uuid.UUID, *, lock: bool = False
) -> Any:
    """One dataset the caller may see (NotFoundError otherwise); `lock` takes its row lock."""
    row = connection.execute(
        text(f"SELECT {DATASET_COLUMNS} FROM datasets d WHERE d.id = :id{' FOR UPDATE' if lock else ''}"),
        {"id": dataset_id},
    ).one_or_none()
    if row is None:
        raise NotFoundError(f"dataset {dataset_id} not found")
    try:
        workspace_access(connection, principal, row.workspace_id)
    except NotFoundError:
        raise NotFoundError(f"dataset {dataset_id} not found") from None
    return row


def find_dataset(connection: Connection, principal: Principal, workspace: str | uuid.UUID, name: str) -> Any:
    """A dataset by its name in a workspace the caller is in."""
    access = workspace_access(connection, principal, workspace)
    row = connection.execute(
        text(f"SELECT {DATASET_COLUMNS} FROM datasets d WHERE d.workspace_id = :w AND d.name = :n"),
        {"w": access.id, "n": name},
    ).one_or_none()
    if row is None:
        raise NotFoundError(f"workspace {access.name!r} has no dataset named {name!r}")
    return row


def require_operate(connection: Connection, principal: Principal, row: Any) -> WorkspaceAccess:
    """The caller's access, when they created the dataset or administer its workspace."""
    access = workspace_access(connection, principal, row.workspace_id)
    if not may_operate_environment(access.role.value, is_creator=row.created_by == principal.user_id):
        raise ForbiddenError(
            f"dataset {row.name!r} was created by someone else; only they and the workspace's admins may change"
            " or delete it"
        )
    return access


_USERS_SQL = text(
    """
    SELECT e.name FROM environments e
     WHERE e.workspace_id = :w AND e.deleted_at IS NULL AND e.phase <> 'deleted'
       AND e.spec -> 'datasets' @> jsonb_build_array(jsonb_build_object('name', CAST(:name AS text)))
     ORDER BY e.name
    """
)


def environments_using(connection: Connection, workspace_id: uuid.UUID, name: str) -> list[str]:
    """Names of the workspace's environments (not deleted) whose spec mounts the dataset."""
    return list(connection.execute(_USERS_SQL, {"w": workspace_id, "name": name}).scalars())


def delete_dataset(connection: Connection, principal: Principal, dataset_id: uuid.UUID) -> Any:
    """Delete the row and give back its quota; ConflictError naming the environments that mount it. The
    caller removes the stored content after commit (`DatasetStorage.remove`, idempotent)."""
    found = get_dataset(connection, principal, dataset_id)
    # the quota lock before the row lock (the global order): a create of the same name holds the quota
    # lock while its insert waits on this row
    xact_lock(connection, lock_key(LockNamespace.QUOTA_WORKSPACE, found.workspace_id))
    row = get_dataset(connection, principal, dataset_id, lock=True)
    require_operate(connection, principal, row)
    users = environments_using(connection, row.workspace_id, row.name)
    if users:
        raise ConflictError(
            f"dataset {row.name!r} is mounted by environment{'s' if len(users) > 1 else ''} {', '.join(users)};"
            " remove it from their specs or delete them first"
        )
    release_storage(connection, row.workspace_id, row.size_bytes)
    connection.execute(text("DELETE FROM datasets WHERE id = :id"), {"id": row.id})
    record_mutation(
        connection,
        principal.user_id,
        "DatasetDeleted",
        f"dataset {row.name} deleted",
        workspace_id=row.workspace_id,
        data={"dataset_id": str(row.id)},
    )
    return row


def check_upload_fields(new: NewDataset) -> None:
    """What each source needs, named by field."""
    if new.source is DatasetSource.UPLOAD:
        if new.size_bytes is None:
            raise InvalidInputError("$.size_bytes", "an upload declares its size in bytes")
        if new.checksum is None:
            raise InvalidInputError("$.checksum", "an upload declares its checksum: sha256:<64 hex digits>")
    elif new.source is DatasetSource.VOLUME:
        if not new.volume:
            raise InvalidInputError("$.volume", "a volume dataset names its PersistentVolumeClaim")
        if new.size_bytes is None:
            raise InvalidInputError(
                "$.size_bytes", "a volume dataset declares its size (counted in the quota)"
            )
