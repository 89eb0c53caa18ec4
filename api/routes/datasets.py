"""Datasets of a workspace: create (upload, S3 prefix, existing volume), list, read, delete; and the
upload routes of each storage backend (chunks at byte offsets for local storage, presigned multipart
parts for S3). Bytes never travel inside JSON: a local chunk is the raw body of a PUT."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Annotated, Any

import msgspec
from litestar import Router, delete, get, post, put
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter, RawBody

from remotegpu.api.context import AnyRequest, Api
from remotegpu.api.openapi import answers
from remotegpu.core.datasets.control import (
    NewDataset,
    check_upload_fields,
    create_dataset,
    delete_dataset,
    get_dataset,
    list_datasets,
    require_may_create,
    require_operate,
)
from remotegpu.core.datasets.s3_sources import locate_s3_source
from remotegpu.core.datasets.s3_uploads import complete_parts, part_bytes_for, plan_parts
from remotegpu.core.datasets.states import DatasetSource, StorageKind
from remotegpu.core.datasets.uploads import receive_chunk, retry_upload, verify_upload
from remotegpu.core.environments.spec import DNS_LABEL
from remotegpu.core.platform.errors import UpstreamUnavailableError
from remotegpu.core.secrets.store import SecretsUnavailableError

_log = logging.getLogger(__name__)
MAX_CHUNK_BYTES = 64 << 20
"""The largest body a chunk PUT accepts (the `dataset_chunk_bytes` setting is at most this)."""
Checksum = Annotated[str, msgspec.Meta(pattern=r"^sha256:[0-9a-f]{64}$", examples=["sha256:" + "0" * 64])]
FileName = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9._ -]{0,254}$",
        max_length=255,
        description="letters, digits, '.', '_', '-' and spaces, not starting with '.'",
    ),
]


class DatasetIn(msgspec.Struct, forbid_unknown_fields=True):
    """A new dataset. `upload` needs `size_bytes`, `checksum` and `file_name`; `s3` needs `url`
    (`s3://bucket/prefix`; its size is listed); `volume` needs `volume` (a PVC) and `size_bytes`."""

    name: Annotated[str, msgspec.Meta(pattern=DNS_LABEL, max_length=63)]
    workspace: Annotated[str, msgspec.Meta(min_length=1, max_length=63)]
    source: DatasetSource = DatasetSource.UPLOAD
    size_bytes: Annotated[int, msgspec.Meta(ge=0, le=(1 << 62))] | None = None
    checksum: Checksum | None = None
    file_name: FileName | None = None
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)] | None = None
    volume: Annotated[str, msgspec.Meta(pattern=DNS_LABEL, max_length=63)] | None = None


class UploadOut(msgspec.Struct):
    """How to send an upload's bytes: chunks of `chunk_bytes` PUT at offsets (`local`), or parts of
    `part_bytes` to presigned URLs (`s3`)."""

    storage: str
    chunk_bytes: int | None = None
    part_bytes: int | None = None


class DatasetOut(msgspec.Struct):
    """A dataset."""

    id: uuid.UUID
    name: str
    workspace_id: uuid.UUID
    source: str
    status: str
    size_bytes: int
    received_bytes: int
    """Bytes of a local upload stored so far: where a resumed upload continues."""
    created_at: dt.datetime
    storage: str | None = None
    checksum: str | None = None
    file_name: str | None = None
    url: str | None = None
    volume: str | None = None
    reason: str | None = None
    retryable: bool = False
    ready_at: dt.datetime | None = None
    upload: UploadOut | None = None


def _out(row: Any, api: Any = None) -> DatasetOut:
    upload = None
    if row.status == "uploading" and api is not None and api.datasets is not None:
        chunk = api.datasets.chunk_bytes
        upload = (
            UploadOut("s3", part_bytes=part_bytes_for(row.size_bytes, chunk))
            if row.storage == StorageKind.S3.value
            else UploadOut("local", chunk_bytes=chunk)
        )
    return DatasetOut(
        row.id,
        row.name,
        row.workspace_id,
        str(row.source),
        str(row.status),
        row.size_bytes,
        row.received_bytes,
        row.created_at,
        row.storage,
        row.checksum,
        row.file_name,
        row.source_url,
        row.volume,
        row.reason,
        row.retryable,
        row.ready_at,
        upload,
    )


@post("/", status_code=201, sync_to_thread=True, opt=answers(403, 404, 409, 503))
def create(data: JSONBody[DatasetIn], request: AnyRequest, api: Api) -> DatasetOut:
    """Create a dataset and count its size against the workspace's storage quota (409 naming the limit
    when it does not fit; 409 when the name is taken). An upload starts `uploading`: send its bytes as
    `upload` says; an S3 prefix is listed first (422 on `$.url` for a bucket that does not exist or
    credentials S3 refuses) and is `ready` at once, as is a volume."""
    principal = api.caller(request)  # before anything else: a stranger makes us ask S3 nothing
    new = NewDataset(
        data.name,
        data.workspace,
        data.source,
        data.size_bytes,
        data.checksum,
        data.file_name or (data.name if data.source is DatasetSource.UPLOAD else None),
        volume=data.volume,
    )
    check_upload_fields(new)
    storages = api.dataset_storages
    if data.source is DatasetSource.S3:
        with api.read_engine.connect() as connection:
            require_may_create(connection, principal, data.workspace)
        new = locate_s3_source(new, data.url, storages)  # S3 is asked with no transaction open
    with api.engine.begin() as connection:
        return _out(create_dataset(connection, principal, new, storages.kind), api)


@get("/", sync_to_thread=True, opt=answers(404))
def list_all(request: AnyRequest, api: Api, workspace: FromQuery[str]) -> list[DatasetOut]:
    """The workspace's datasets by name (`workspace`: its name or id)."""
    with api.acting(request) as (connection, principal):
        return [_out(row, api) for row in list_datasets(connection, principal, workspace)]


@get("/{dataset_id:uuid}", sync_to_thread=True)
def read(dataset_id: FromPath[uuid.UUID], request: AnyRequest, api: Api) -> DatasetOut:
    """One dataset: its status, why it failed, and how far its upload got."""
    with api.acting(request) as (connection, principal):
        return _out(get_dataset(connection, principal, dataset_id), api)


@delete("/{dataset_id:uuid}", status_code=200, sync_to_thread=True, opt=answers(403, 409))
def remove(dataset_id: FromPath[uuid.UUID], request: AnyRequest, api: Api) -> DatasetOut:
    """Delete a dataset and its stored content, giving its quota back; 409 naming the environments that
    mount it (the creator and workspace admins may delete)."""
    with api.acting(request) as (connection, principal):
        row = delete_dataset(connection, principal, dataset_id)
    if row.storage:  # after commit; removal is idempotent, a crash leaves only unreachable bytes
        try:
            api.dataset_storages.for_row(row).remove(row.id, row.file_name)
        except (UpstreamUnavailableError, SecretsUnavailableError) as error:  # the dataset is gone anyway
            _log.warning("Dataset content not removed", extra={"dataset": str(row.id), "error": str(error)})
    return _out(row)


@put(
    "/{dataset_id:uuid}/content",
    sync_to_thread=True,
    request_max_body_size=MAX_CHUNK_BYTES,
    opt=answers(403, 409),
)
def put_chunk(
    dataset_id: FromPath[uuid.UUID],
    body: RawBody,
    request: AnyRequest,
    api: Api,
    offset: Annotated[int, QueryParameter(ge=0)] = 0,
) -> DatasetOut:
    """Store one chunk of a local upload at byte `offset` (at most the `received_bytes` so far, so a
    resumed client may repeat a chunk; bytes that differ from those stored are a 409). The last byte
    verifies the upload: `ready`, or `failed` with the reason (a checksum mismatch may be retried)."""
    principal = api.caller(request)
    return _out(
        receive_chunk(api.engine, principal, dataset_id, offset, body, api.dataset_storages.local), api
    )


class PartsIn(msgspec.Struct, forbid_unknown_fields=True):
    """Part numbers to sign (none: every part S3 does not hold yet)."""

    parts: list[Annotated[int, msgspec.Meta(ge=1, le=10_000)]] = []


class UploadedPartOut(msgspec.Struct):
    number: int
    etag: str
    size_bytes: int


class PartsOut(msgspec.Struct):
    """Presigned URLs to PUT each part to, and the parts S3 already holds (skip those whose ETag is the
    MD5 of your part; a different one means your file is not the one this upload started with)."""

    part_bytes: int
    urls: dict[int, str]
    uploaded: list[UploadedPartOut]


@post("/{dataset_id:uuid}/parts", status_code=200, sync_to_thread=True, opt=answers(403, 409, 503))
def parts(
    dataset_id: FromPath[uuid.UUID], data: JSONBody[PartsIn], request: AnyRequest, api: Api
) -> PartsOut:
    """Presigned part URLs of an S3 upload (valid for an hour), and the parts already uploaded."""
    principal = api.caller(request)
    storages = api.dataset_storages
    plan = plan_parts(api.engine, principal, dataset_id, data.parts, storages.s3, storages.chunk_bytes)
    return PartsOut(
        plan.part_bytes,
        plan.urls,
        [UploadedPartOut(p.number, p.etag, p.size_bytes) for p in plan.uploaded],
    )


class PartIn(msgspec.Struct, forbid_unknown_fields=True):
    number: Annotated[int, msgspec.Meta(ge=1, le=10_000)]
    etag: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class CompleteIn(msgspec.Struct, forbid_unknown_fields=True):
    """An S3 upload's parts with the ETags S3 answered; a local upload sends none."""

    parts: list[PartIn] = []


@post("/{dataset_id:uuid}/complete", status_code=200, sync_to_thread=True, opt=answers(403, 409, 503))
def complete(
    dataset_id: FromPath[uuid.UUID], data: JSONBody[CompleteIn], request: AnyRequest, api: Api
) -> DatasetOut:
    """Finish an upload and verify it: `ready` when size and checksum match the declared ones, else
    `failed` with the reason (retryable)."""
    principal = api.caller(request)
    storages = api.dataset_storages
    with api.read_engine.connect() as connection:
        row = get_dataset(connection, principal, dataset_id)
        require_operate(connection, principal, row)
    if row.storage == StorageKind.S3.value:
        parts = [(p.number, p.etag) for p in data.parts]
        return _out(complete_parts(api.engine, principal, dataset_id, parts, storages.s3()), api)
    return _out(verify_upload(api.engine, principal, dataset_id, storages.for_row(row)), api)


@post("/{dataset_id:uuid}/retry", status_code=200, sync_to_thread=True, opt=answers(403, 409))
def retry(dataset_id: FromPath[uuid.UUID], request: AnyRequest, api: Api) -> DatasetOut:
    """Start a failed upload over from byte 0 (its stored bytes are removed); 409 unless it failed."""
    principal = api.caller(request)
    with api.read_engine.connect() as connection:
        row = get_dataset(connection, principal, dataset_id)
        require_operate(connection, principal, row)
    storage = api.dataset_storages.for_row(row)
    return _out(retry_upload(api.engine, principal, dataset_id, storage), api)


router = Router(
    "/datasets",
    route_handlers=[create, list_all, read, remove, put_chunk, parts, complete, retry],
    tags=["datasets"],
)
