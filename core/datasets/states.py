"""The vocabulary of datasets: where their content comes from, where it is kept, and how far it got."""

from __future__ import annotations

import enum


class DatasetSource(enum.StrEnum):
    """Where a dataset's content comes from."""

    UPLOAD = "upload"
    """Sent by a client to the storage backend (chunked PUTs, or presigned S3 multipart parts)."""
    S3 = "s3"
    """Objects already in an S3 bucket (`s3://bucket/prefix`), synced into a volume when mounted."""
    VOLUME = "volume"
    """An existing PersistentVolumeClaim of the cluster, mounted as it is."""


class StorageKind(enum.StrEnum):
    """The backend that keeps an uploaded dataset's bytes."""

    LOCAL = "local"
    S3 = "s3"


class DatasetStatus(enum.StrEnum):
    """How far a dataset got; only `ready` ones can be mounted."""

    UPLOADING = "uploading"
    READY = "ready"
    FAILED = "failed"
    """Kept with its reason; a retryable failure (a checksum mismatch) may be uploaded again."""

    def is_terminal(self) -> bool:
        """Ready is the end; failed waits for a retry, uploading for more bytes."""
        return self is DatasetStatus.READY
