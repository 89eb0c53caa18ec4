"""A secrets store in a dict: for tests and benchmarks that have no database, as `InMemoryCluster` is for
the cluster. Values live as long as the process; never a production backend."""

from __future__ import annotations

import threading

from remotegpu.core.secrets.store import (
    SecretNotFoundError,
    SecretPath,
    SecretScope,
    SecretValue,
    encode_value,
)


class InMemorySecretStore:
    """`SecretStore` on a dict, safe to share between threads; its repr shows no values."""

    def __init__(self) -> None:
        self._values: dict[SecretPath, SecretValue] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"InMemorySecretStore({len(self._values)} secrets)"

    def put(self, path: SecretPath, value: SecretValue) -> None:
        data, is_text = encode_value(value)  # refuses what the real backends refuse
        with self._lock:
            self._values[path] = data.decode() if is_text else data

    def get(self, path: SecretPath) -> SecretValue:
        with self._lock:
            if path not in self._values:
                raise SecretNotFoundError(path)
            return self._values[path]

    def delete(self, path: SecretPath) -> bool:
        with self._lock:
            return self._values.pop(path, None) is not None

    def list(self, scope: SecretScope) -> list[str]:
        with self._lock:
            return sorted(path.name for path in self._values if path.scope == scope)
