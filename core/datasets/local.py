"""The local storage backend: a directory the platform owns (in a cluster, the volume
`dataset_volume_claim` mounted into the API; environments mount the same volume at the dataset's
folder, read-only).

A dataset's bytes are `<root>/<dataset id>/<file name>`. A client sends them as chunks at byte offsets;
a chunk may start anywhere up to what was received (a resumed client repeats what it is not sure
arrived). The overlap with what is already stored must be byte-for-byte the same, so a resumed upload
of a different file is refused instead of silently mixed in. Chunks are written and flushed to disk
before the caller records the new received count, so the count never runs ahead of the bytes.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from remotegpu.core.datasets.storage import StoredContent, sha256_of
from remotegpu.core.platform.errors import ConflictError

_READ_BYTES = 1 << 20


class LocalStorage:
    """Datasets as files under `root`."""

    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, dataset_id: uuid.UUID, file_name: str) -> Path:
        """Where the dataset's file lives."""
        return self.root / str(dataset_id) / file_name

    def write_chunk(
        self, dataset_id: uuid.UUID, file_name: str, offset: int, received: int, data: bytes
    ) -> int:
        """Write `data` at `offset` (at most `received`, the bytes already stored) and return how many
        bytes are stored now. `ConflictError` when the part that overlaps the stored bytes differs."""
        path = self.path(dataset_id, file_name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+b") as file:
            overlap = min(received - offset, len(data))
            if overlap > 0:
                file.seek(offset)
                if file.read(overlap) != data[:overlap]:
                    raise ConflictError(
                        f"the bytes at offset {offset} differ from those uploaded before: this is not the file"
                        " this upload started with. Upload it under another name, or delete the dataset first",
                        "body",
                    )
            file.truncate(received)  # anything past `received` is a write a crash interrupted
            file.seek(received)
            file.write(data[max(overlap, 0) :])
            file.flush()
            os.fsync(file.fileno())
        return max(received, offset + len(data))

    def restart(self, dataset_id: uuid.UUID, file_name: str) -> None:
        """Forget a failed upload's bytes, so a retry starts from offset 0."""
        self.remove(dataset_id, file_name)

    def stored(self, dataset_id: uuid.UUID, file_name: str) -> StoredContent | None:
        path = self.path(dataset_id, file_name)
        if not path.exists():
            return None
        return sha256_of(_read(path))

    def remove(self, dataset_id: uuid.UUID, file_name: str) -> None:
        shutil.rmtree(self.root / str(dataset_id), ignore_errors=True)


def _read(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as file:
        while chunk := file.read(_READ_BYTES):
            yield chunk
