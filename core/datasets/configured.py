"""The dataset storage the settings choose, built once per process; S3's connection is read from the
secrets store on first use (so a process that never touches S3 needs no secret)."""

from __future__ import annotations

import threading
from typing import Any

from remotegpu.core.datasets.local import LocalStorage
from remotegpu.core.datasets.s3 import S3Connection, S3Storage
from remotegpu.core.datasets.states import StorageKind
from remotegpu.core.datasets.storage import DatasetStorage
from remotegpu.core.platform.errors import ConflictError
from remotegpu.core.platform.settings import Settings
from remotegpu.core.secrets.store import SecretNotFoundError, SecretStore, SecretsUnavailableError


class DatasetStorages:
    """The backend new uploads go to (`kind`), and every backend an existing row may name."""

    def __init__(
        self, kind: StorageKind, local: LocalStorage, chunk_bytes: int, secrets: SecretStore | None = None
    ) -> None:
        self.kind = kind
        self.local = local
        self.chunk_bytes = chunk_bytes
        self.secrets = secrets
        self._s3: S3Storage | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, secrets: SecretStore | None) -> DatasetStorages:
        return cls(
            StorageKind(settings.dataset_storage),
            LocalStorage(settings.dataset_folder),
            settings.dataset_chunk_bytes,
            secrets,
        )

    def s3(self) -> S3Storage:
        """The S3 backend, from the secret `dataset-s3`; SecretsUnavailableError (503) saying what to set."""
        with self._lock:
            if self._s3 is None:
                if self.secrets is None:
                    raise SecretsUnavailableError(
                        "S3 datasets need the secrets store: set secrets_key (or secrets_backend = vault)"
                    )
                try:
                    connection = S3Connection.from_secret(self.secrets)
                except SecretNotFoundError:
                    raise SecretsUnavailableError(
                        "S3 datasets need the platform secret dataset-s3: a platform admin sets it with"
                        " `remotegpu datasets-s3 set`"
                    ) from None
                self._s3 = S3Storage(connection)
            return self._s3

    def for_kind(self, kind: StorageKind | str | None) -> DatasetStorage:
        """The backend a row's `storage` names."""
        if kind == StorageKind.S3.value:
            return self.s3()
        if kind == StorageKind.LOCAL.value:
            return self.local
        raise ConflictError("this dataset has no uploaded content (its source is an S3 prefix or a volume)")

    def for_row(self, row: Any) -> DatasetStorage:
        return self.for_kind(row.storage)
