"""Copying an S3 prefix into a folder with checksums: what `remotegpu dataset-sync` runs in a sync Job.

Every object under the prefix becomes a file at its key relative to the prefix. Each is streamed into
a temporary file beside its target while being hashed, checked, then renamed into place, so a file
that exists is complete. The checks: the size S3 listed; S3's own MD5 where its ETag is one (objects
not uploaded in parts); and, for an uploaded dataset (one object), the SHA-256 its client declared. A
manifest (`.remotegpu-sync.json`) records what was copied, so a Job retried after a crash skips the
files it already holds. Keys that would land outside the folder (`..`, absolute) are refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from remotegpu.core.datasets.s3 import list_objects, s3_error
from remotegpu.core.datasets.s3_urls import S3Location
from remotegpu.core.platform.errors import RemoteGPUError

MANIFEST = ".remotegpu-sync.json"
_READ_BYTES = 1 << 20


class SyncError(RemoteGPUError):
    """The copy does not match its source (size or checksum), or a key cannot be a file in the folder."""


@dataclass(frozen=True)
class SyncReport:
    """What one run did."""

    files: int
    bytes: int
    skipped: int


def sync_prefix(client: Any, location: S3Location, dest: Path, checksum: str | None = None) -> SyncReport:
    """Copy the objects under `location` into `dest`; `checksum` (`sha256:<hex>`): the one object's
    declared SHA-256. SyncError on any mismatch; S3's errors as `StorageRefusedError` or
    `StorageUnavailableError`."""
    objects = list(list_objects(client, location))
    if checksum is not None and len(objects) != 1:
        raise SyncError(f"a checksum names one object, but {location.url} holds {len(objects)}")
    dest.mkdir(parents=True, exist_ok=True)
    manifest_path = dest / MANIFEST
    manifest: dict[str, dict[str, Any]] = (
        json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    )
    copied = skipped = total = 0
    for key, size in objects:
        relative = _relative(key, location.prefix)
        target = dest / relative
        known = manifest.get(relative)
        if known and known["size"] == size and target.exists() and target.stat().st_size == size:
            skipped += 1
            continue
        digest = _copy(client, location.bucket, key, size, target)
        if checksum is not None and f"sha256:{digest}" != checksum:
            target.unlink()
            raise SyncError(f"{key}: its SHA-256 is sha256:{digest}, not the declared {checksum}")
        manifest[relative] = {"size": size, "sha256": digest}
        manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True))
        copied += 1
        total += size
    return SyncReport(copied, total, skipped)


def _relative(key: str, prefix: str) -> str:
    relative = key[len(prefix) :].lstrip("/") or PurePosixPath(key).name
    parts = PurePosixPath(relative).parts
    if relative.startswith("/") or ".." in parts or not parts or relative == MANIFEST:
        raise SyncError(f"object key {key!r} cannot be a file inside the dataset's folder")
    return relative


def _copy(client: Any, bucket: str, key: str, size: int, target: Path) -> str:
    """Stream one object into `target` through a temporary file; its SHA-256 (hex)."""
    try:
        answer = client.get_object(Bucket=bucket, Key=key)
    except (ClientError, BotoCoreError) as error:
        raise s3_error(error, bucket) from None
    etag = str(answer.get("ETag", "")).strip('"')
    sha256, md5, written = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    with open(partial, "wb") as file:
        for chunk in answer["Body"].iter_chunks(_READ_BYTES):
            file.write(chunk)
            sha256.update(chunk)
            md5.update(chunk)
            written += len(chunk)
        file.flush()
        os.fsync(file.fileno())
    if written != size:
        partial.unlink()
        raise SyncError(f"{key}: {written} bytes arrived, S3 listed {size}")
    if etag and "-" not in etag and etag != md5.hexdigest():  # a multipart ETag is no MD5 of the object
        partial.unlink()
        raise SyncError(f"{key}: the bytes' MD5 is {md5.hexdigest()}, S3's ETag says {etag}")
    os.replace(partial, target)
    return sha256.hexdigest()
