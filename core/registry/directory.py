"""The configured registries as the reconciler and the API use them: looked up by host, with a client
built on demand and the pull Secret an image needs.

Configurations are read from Postgres at most once per `ttl` (a short connection of its own, never
held during a registry call), so a registry an admin adds reaches the reconciler within the TTL.
Clients are built per use by the `ClientFactory` (the OCI or Harbor client; tests may give their own)
with the registry's login from the secrets store, and closed by the caller.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine

from remotegpu.core.registry.client import RegistryClient
from remotegpu.core.registry.configured import RegistryConfig, load_registries
from remotegpu.core.registry.credentials import (
    PullSecret,
    RegistryLogin,
    pull_secret_for,
    read_login,
    registry_login_path,
)
from remotegpu.core.secrets.store import SecretStore

ClientFactory = Callable[[RegistryConfig, RegistryLogin | None], RegistryClient]
"""Builds the client of one registry (its kind decides which) with its login, if it has one."""


def split_image(image: str) -> tuple[str, str, str | None, str | None]:
    """`host/repo:tag` or `host/repo@digest` → (host, repository, tag, digest); Docker Hub when the
    first segment names no host."""
    first, _, rest = image.partition("/")
    host, path = (
        (first, rest)
        if rest and ("." in first or ":" in first or first == "localhost")
        else ("docker.io", image)
    )
    path, _, digest = path.partition("@")
    repository, tag = path, None
    last_colon = path.rfind(":")
    if last_colon > path.rfind("/"):
        repository, tag = path[:last_colon], path[last_colon + 1 :]
    if tag is None and not digest:
        tag = "latest"
    return host, repository, tag, digest or None


class RegistryDirectory:
    """Thread-safe (reconciler workers share it)."""

    def __init__(
        self,
        engine: Engine,
        store: SecretStore | None,
        factory: ClientFactory,
        *,
        ttl_seconds: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._store = store
        self._factory = factory
        self._ttl = ttl_seconds
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._configs: list[RegistryConfig] = []
        self._read_at: float | None = None

    def __repr__(self) -> str:
        return f"RegistryDirectory(ttl={self._ttl}s)"

    def registries(self) -> list[RegistryConfig]:
        """Every configured registry (read again once the TTL has passed)."""
        with self._lock:
            now = self._monotonic()
            if self._read_at is None or now - self._read_at >= self._ttl:
                with self._engine.connect() as connection:
                    self._configs = load_registries(connection)
                self._read_at = now
            return list(self._configs)

    def refresh(self) -> None:
        """Read the configurations again at the next use (after a change made in this process)."""
        with self._lock:
            self._read_at = None

    def for_host(self, host: str) -> RegistryConfig | None:
        """The configured registry whose references name `host`, if any."""
        return next((c for c in self.registries() if c.host == host), None)

    def login(self, config: RegistryConfig) -> RegistryLogin | None:
        """The registry's own login, if one is stored."""
        return None if self._store is None else read_login(self._store, registry_login_path(config.id))

    def client(self, config: RegistryConfig) -> RegistryClient:
        """A new client of `config` with its login; the caller closes it."""
        return self._factory(config, self.login(config))

    def pull_secret(self, image: str) -> PullSecret | None:
        """The pull Secret a pod running `image` needs, when its registry is configured with a login."""
        if self._store is None:
            return None
        host, repository, _, _ = split_image(image)
        config = self.for_host(host)
        return None if config is None else pull_secret_for(self._store, config, repository)
