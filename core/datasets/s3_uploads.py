"""Uploads to the S3 backend: presigned multipart parts the client sends straight to S3.

The API never carries the bytes. It starts one multipart upload per dataset (recorded on the row; two
racing starts keep the first and abort the other), hands out presigned part URLs together with the
parts S3 already holds (their ETags are the MD5 of each part, so a resuming client skips the parts it
sent before and notices a part that differs from its file), and completes the upload with the client's
part list. Verification then reads the object once and compares size and SHA-256 with what was
declared (`uploads.verify_upload`). No transaction is open during any S3 call.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, text

from remotegpu.core.accounts.users import Principal
from remotegpu.core.datasets.s3 import S3Storage, UploadedPart
from remotegpu.core.datasets.states import StorageKind
from remotegpu.core.datasets.uploads import open_upload, verify_upload
from remotegpu.core.platform.errors import ConflictError, InvalidInputError

MIN_PART_BYTES = 5 << 20
"""S3's smallest part (all but the last)."""
MAX_PARTS = 10_000


def part_bytes_for(size_bytes: int, chunk_bytes: int) -> int:
    """The part size of an upload: the configured chunk, at least S3's minimum, large enough for S3's
    10 000 parts."""
    return max(chunk_bytes, MIN_PART_BYTES, math.ceil(size_bytes / MAX_PARTS))


def part_count(size_bytes: int, part_bytes: int) -> int:
    """How many parts an upload has (an empty file is one empty part)."""
    return max(1, math.ceil(size_bytes / part_bytes))


@dataclass(frozen=True)
class PartPlan:
    """What a client needs to send (or resume) an upload's parts."""

    row: Any
    part_bytes: int
    urls: dict[int, str]
    uploaded: list[UploadedPart]


def plan_parts(
    engine: Engine,
    principal: Principal,
    dataset_id: uuid.UUID,
    numbers: list[int],
    s3: Callable[[], S3Storage],
    chunk_bytes: int,
) -> PartPlan:
    """Presigned URLs for `numbers` (none: every part not yet uploaded) and the parts S3 holds. `s3`
    gives the backend once the caller and the row are checked."""
    with engine.begin() as connection:
        row = open_upload(connection, principal, dataset_id, StorageKind.S3)
    storage = s3()
    part_bytes = part_bytes_for(row.size_bytes, chunk_bytes)
    count = part_count(row.size_bytes, part_bytes)
    wrong = [n for n in numbers if not 1 <= n <= count]
    if wrong:
        raise InvalidInputError(
            "$.parts", f"part {wrong[0]} does not exist; this upload has parts 1 to {count}"
        )
    upload_id = row.upload_id or _start(engine, row, storage)
    uploaded = storage.uploaded_parts(row.id, row.file_name, upload_id)
    held = {part.number for part in uploaded}
    wanted = numbers or [n for n in range(1, count + 1) if n not in held]
    return PartPlan(row, part_bytes, storage.part_urls(row.id, row.file_name, upload_id, wanted), uploaded)


def _start(engine: Engine, row: Any, storage: S3Storage) -> str:
    """Start the multipart upload and record it, unless a racing call recorded one first (then ours is
    aborted and theirs used)."""
    upload_id = storage.start_upload(row.id, row.file_name)
    with engine.begin() as connection:
        recorded = connection.execute(
            text(
                "UPDATE datasets SET upload_id = coalesce(upload_id, :u), updated_at = now()"
                " WHERE id = :id RETURNING upload_id"
            ),
            {"id": row.id, "u": upload_id},
        ).scalar_one_or_none()
    if recorded != upload_id:
        storage.abort(row.id, row.file_name, upload_id)
    if recorded is None:
        raise ConflictError(f"dataset {row.name!r} was deleted meanwhile")
    return str(recorded)


def complete_parts(
    engine: Engine,
    principal: Principal,
    dataset_id: uuid.UUID,
    parts: list[tuple[int, str]],
    storage: S3Storage,
) -> Any:
    """Join the uploaded parts and verify the object; returns the row, `ready` or `failed` with why."""
    with engine.begin() as connection:
        row = open_upload(connection, principal, dataset_id, StorageKind.S3)
    if row.upload_id is None:
        raise ConflictError("no part was uploaded yet; ask for part URLs first (POST /datasets/{id}/parts)")
    storage.complete(row.id, row.file_name, row.upload_id, parts)
    return verify_upload(engine, principal, row.id, storage)
