"""Uploads into a dataset: chunks at byte offsets (local backend), verification, and retry.

A chunk is written under the dataset's row lock (chunks of one dataset land one at a time, in order)
and the received count is committed only after the bytes are on disk. Verification reads the stored
content with no transaction open (hashing a large file must not hold a row lock), then records the
verdict guarded by the status it read, so two verifications of one upload record it once. A failed
upload keeps its reason; a retryable one may start over (`retry_upload`).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Connection, Engine, text

from remotegpu.core.accounts.users import Principal
from remotegpu.core.datasets.control import DATASET_COLUMNS, get_dataset, require_operate
from remotegpu.core.datasets.local import LocalStorage
from remotegpu.core.datasets.states import DatasetStatus, StorageKind
from remotegpu.core.datasets.storage import DatasetStorage
from remotegpu.core.platform.errors import ConflictError, InvalidInputError
from remotegpu.core.platform.events import record_mutation


def open_upload(
    connection: Connection, principal: Principal, dataset_id: uuid.UUID, kind: StorageKind
) -> Any:
    """The locked row of an upload the caller may continue on the `kind` backend; ConflictError saying
    what to do when it is complete, failed, or stored elsewhere."""
    row = get_dataset(connection, principal, dataset_id, lock=True)
    require_operate(connection, principal, row)
    if row.storage != kind.value:
        raise ConflictError(
            f"dataset {row.name!r} is not an upload to {kind.value} storage ({row.source} source,"
            f" {row.storage or 'no'} storage); nothing can be uploaded to it this way"
        )
    if row.status == DatasetStatus.READY.value:
        raise ConflictError(
            f"dataset {row.name!r} is complete and ready; create a new dataset for new content"
        )
    if row.status == DatasetStatus.FAILED.value:
        raise ConflictError(
            f"dataset {row.name!r} failed: {row.reason}. Retry it (POST /datasets/{row.id}/retry,"
            " `remotegpu datasets create` again) to upload it again"
        )
    return row


def receive_chunk(
    engine: Engine,
    principal: Principal,
    dataset_id: uuid.UUID,
    offset: int,
    data: bytes,
    storage: LocalStorage,
) -> Any:
    """Store `data` at `offset` of a local upload (at most the bytes received so far: a resumed client may
    repeat some) and, once every declared byte arrived, verify it. Returns the row as it is now."""
    with engine.begin() as connection:
        row = open_upload(connection, principal, dataset_id, StorageKind.LOCAL)
        if offset > row.received_bytes:
            raise ConflictError(
                f"offset {offset} is past the {row.received_bytes} bytes received so far; resume from"
                f" offset {row.received_bytes}",
                "offset",
            )
        if offset + len(data) > row.size_bytes:
            raise InvalidInputError(
                "body",
                f"the chunk ends at byte {offset + len(data)}, past the declared size of {row.size_bytes} bytes",
            )
        received = storage.write_chunk(row.id, row.file_name, offset, row.received_bytes, data)
        row = connection.execute(
            text(
                f"UPDATE datasets d SET received_bytes = :received, updated_at = now() WHERE id = :id"
                f" RETURNING {DATASET_COLUMNS}"
            ),
            {"id": row.id, "received": received},
        ).one()
    if row.received_bytes == row.size_bytes:
        return verify_upload(engine, principal, row.id, storage)
    return row


def verify_upload(
    engine: Engine, principal: Principal, dataset_id: uuid.UUID, storage: DatasetStorage
) -> Any:
    """Compare what the backend holds with the declared size and checksum and record `ready` or `failed`
    (retryable, with the reason). Returns the row as it is now; a repeat changes nothing."""
    with engine.connect() as connection:
        row = get_dataset(connection, principal, dataset_id)
    if row.status != DatasetStatus.UPLOADING.value:
        return row
    content = storage.stored(row.id, row.file_name)
    reason = None
    if content is None:
        reason = "no content was uploaded"
    elif content.size_bytes != row.size_bytes:
        reason = f"the upload holds {content.size_bytes} bytes, not the {row.size_bytes} declared"
    elif content.checksum != row.checksum:
        reason = (
            f"checksum mismatch: the uploaded content is {content.checksum}, not the declared {row.checksum}"
        )
    status = DatasetStatus.READY if reason is None else DatasetStatus.FAILED
    with engine.begin() as connection:
        updated = connection.execute(
            text(
                "UPDATE datasets d SET status = CAST(:status AS text), reason = :reason, retryable = :retryable,"
                " upload_id = CASE WHEN CAST(:status AS text) = 'ready' THEN NULL ELSE upload_id END,"
                " ready_at = CASE WHEN CAST(:status AS text) = 'ready' THEN now() END, updated_at = now()"
                f" WHERE id = :id AND status = 'uploading' RETURNING {DATASET_COLUMNS}"
            ),
            {"id": row.id, "status": status.value, "reason": reason, "retryable": reason is not None},
        ).one_or_none()
        if updated is None:  # verified by someone else in the meantime
            return get_dataset(connection, principal, dataset_id)
        record_mutation(
            connection,
            principal.user_id,
            "DatasetReady" if reason is None else "DatasetFailed",
            f"dataset {row.name} {'ready' if reason is None else 'failed: ' + reason}",
            workspace_id=row.workspace_id,
            data={"dataset_id": str(row.id)},
        )
    return updated


def retry_upload(engine: Engine, principal: Principal, dataset_id: uuid.UUID, storage: DatasetStorage) -> Any:
    """Start a failed, retryable upload over: its stored bytes are removed, its status is `uploading`
    again from offset 0. ConflictError for anything else."""
    with engine.connect() as connection:
        row = get_dataset(connection, principal, dataset_id)
        require_operate(connection, principal, row)
    if row.status != DatasetStatus.FAILED.value or not row.retryable:
        raise ConflictError(f"dataset {row.name!r} is {row.status}; only a failed upload can be retried")
    storage.remove(row.id, row.file_name)  # before the row says `uploading`: a crash here retries cleanly
    with engine.begin() as connection:
        updated = connection.execute(
            text(
                "UPDATE datasets d SET status = 'uploading', reason = NULL, retryable = false, received_bytes = 0,"
                f" upload_id = NULL, updated_at = now() WHERE id = :id AND status = 'failed'"
                f" RETURNING {DATASET_COLUMNS}"
            ),
            {"id": row.id},
        ).one_or_none()
        if updated is None:
            return get_dataset(connection, principal, dataset_id)
        record_mutation(
            connection,
            principal.user_id,
            "DatasetRetried",
            f"dataset {row.name} upload restarted",
            workspace_id=row.workspace_id,
            data={"dataset_id": str(row.id)},
        )
    return updated
