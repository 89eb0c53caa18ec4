"""The storage backends of uploaded datasets, behind one interface.

Uploads go to the backend, never through a pod or a database row: the local backend takes chunked
`PUT`s at byte offsets into a directory the platform owns (`local`), the S3 backend hands out presigned
multipart-upload URLs the client sends parts to directly (`s3`). Both answer the same questions the API
and the reconciler ask: how far an upload got (so a client resumes instead of starting over), what the
stored content's size and SHA-256 are (a dataset is ready only when both match what its client
declared), and how to remove it. Every call is idempotent by the dataset's id, so a repeat after a crash
finds what the first one left.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from remotegpu.core.platform.errors import UpstreamUnavailableError

CHECKSUM_PATTERN = re.compile(r"^sha256:[0-9a-f]{64}$")
"""How checksums are written everywhere (API, CLI, rows): the algorithm, a colon, lower-case hex."""


@dataclass(frozen=True)
class StoredContent:
    """What a backend holds for a dataset: its size and SHA-256 (`sha256:<hex>`)."""

    size_bytes: int
    checksum: str


class StorageUnavailableError(UpstreamUnavailableError):
    """The backend could not be reached or answered with a server error; a retry may cure it (503)."""


class StorageRefusedError(UpstreamUnavailableError):
    """The backend refused our credentials or the request (a missing bucket); the message says what to fix.
    Where the caller named the bucket (an S3 source) it is their input's fault and answered as such."""


class DatasetStorage(Protocol):
    """Where uploaded datasets' bytes live."""

    kind: str
    """`local` or `s3`: what `datasets.storage` records."""

    def stored(self, dataset_id: uuid.UUID, file_name: str) -> StoredContent | None:
        """The content a completed upload left (read through once to hash it); None when there is none."""
        ...

    def remove(self, dataset_id: uuid.UUID, file_name: str) -> None:
        """Delete whatever is stored for the dataset (content, unfinished uploads); no error when nothing is."""
        ...


def sha256_of(chunks: Iterable[bytes]) -> StoredContent:
    """Size and checksum of a stream of bytes."""
    digest = hashlib.sha256()
    size = 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
    return StoredContent(size, f"sha256:{digest.hexdigest()}")
