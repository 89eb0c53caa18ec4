"""The CLI side of dataset uploads: hash the file, send its bytes to the storage backend, resume.

A local-storage upload PUTs chunks at byte offsets, starting from the `received_bytes` the API reports
(so an interrupted upload continues where it stopped). An S3 upload asks the API for presigned part
URLs and PUTs the parts straight to S3, several at a time; the API also lists the parts S3 holds, each
with its ETag (the MD5 of the part), so a resumed upload skips what arrived and refuses to mix in a
file whose earlier parts differ. Both show one progress bar.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from remotegpu.core.platform.errors import RemoteGPUError
from remotegpu.ops.api_client import ApiClient

_READ_BYTES = 1 << 20
PARALLEL_PARTS = 4


@dataclass(frozen=True)
class LocalFile:
    """The file to upload: where it is, its size and SHA-256 (`sha256:<hex>`)."""

    path: Path
    size_bytes: int
    checksum: str


def describe_file(path: Path) -> LocalFile:
    """Size and checksum of `path` (read once); RemoteGPUError when it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as file:
            while chunk := file.read(_READ_BYTES):
                digest.update(chunk)
        size = path.stat().st_size
    except OSError as error:
        raise RemoteGPUError(f"cannot read {path}: {error.strerror or error.__class__.__name__}") from None
    return LocalFile(path, size, f"sha256:{digest.hexdigest()}")


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        console=console,
        transient=False,
    )


def upload(client: ApiClient, dataset: dict[str, Any], file: LocalFile, console: Console) -> dict[str, Any]:
    """Send the file's missing bytes to the dataset's backend and return the dataset as the API answers
    after the last byte (ready, or failed with its reason)."""
    plan = dataset.get("upload") or {}
    with _progress(console) as progress:
        task = progress.add_task(f"dataset/{dataset['name']}", total=file.size_bytes)
        advance: Callable[[int], None] = lambda n: progress.update(task, advance=n)  # noqa: E731
        if plan.get("storage") == "s3":
            return _upload_parts(client, dataset, file, int(plan["part_bytes"]), advance)
        return _upload_chunks(client, dataset, file, int(plan.get("chunk_bytes") or 8 << 20), advance)


def _upload_chunks(
    client: ApiClient,
    dataset: dict[str, Any],
    file: LocalFile,
    chunk_bytes: int,
    advance: Callable[[int], None],
) -> dict[str, Any]:
    offset = int(dataset["received_bytes"])
    advance(offset)
    path = f"/datasets/{dataset['id']}/content"
    answer = dataset
    with open(file.path, "rb") as handle:
        handle.seek(offset)
        while offset < file.size_bytes or file.size_bytes == 0:
            chunk = handle.read(chunk_bytes)
            answer = client.request("PUT", path, params={"offset": offset}, content=chunk)
            offset += len(chunk)
            advance(len(chunk))
            if file.size_bytes == 0:
                break
    return answer


def _upload_parts(
    client: ApiClient,
    dataset: dict[str, Any],
    file: LocalFile,
    part_bytes: int,
    advance: Callable[[int], None],
) -> dict[str, Any]:
    plan = client.post(f"/datasets/{dataset['id']}/parts", {"parts": []})
    part_bytes = int(plan["part_bytes"])
    etags: dict[int, str] = {}
    for part in plan["uploaded"]:
        number = int(part["number"])
        if _etag(_read_part(file.path, number, part_bytes)) != part["etag"].strip('"'):
            raise RemoteGPUError(
                f"part {number} already uploaded to dataset/{dataset['name']} differs from {file.path}: this is not"
                " the file the upload started with. Delete the dataset or upload under another name"
            )
        etags[number] = part["etag"]
        advance(int(part["size_bytes"]))

    def send(item: tuple[str, str]) -> tuple[int, str]:
        number, url = int(item[0]), item[1]
        data = _read_part(file.path, number, part_bytes)
        try:
            response = httpx.put(url, content=data, timeout=120)
        except httpx.TransportError as error:
            raise RemoteGPUError(
                f"S3 could not be reached for part {number} ({error.__class__.__name__})"
            ) from None
        if not response.is_success:
            raise RemoteGPUError(f"S3 refused part {number}: HTTP {response.status_code}")
        advance(len(data))
        return number, response.headers["ETag"]

    with ThreadPoolExecutor(PARALLEL_PARTS) as pool:
        etags.update(pool.map(send, sorted(plan["urls"].items(), key=lambda kv: int(kv[0]))))
    parts = [{"number": n, "etag": etag} for n, etag in sorted(etags.items())]
    return dict(client.post(f"/datasets/{dataset['id']}/complete", {"parts": parts}))


def _read_part(path: Path, number: int, part_bytes: int) -> bytes:
    with open(path, "rb") as handle:
        handle.seek((number - 1) * part_bytes)
        return handle.read(part_bytes)


def _etag(data: bytes) -> str:
    """S3's ETag of a part: the MD5 of its bytes (not a security use)."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()
