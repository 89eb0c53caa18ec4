"""The client of a configured registry: the OCI Distribution client or the Harbor client, by its kind."""

from __future__ import annotations

from remotegpu.core.registry.client import RegistryClient, RegistryUnavailableError
from remotegpu.core.registry.configured import RegistryConfig
from remotegpu.core.registry.credentials import RegistryLogin


def default_client_factory(config: RegistryConfig, login: RegistryLogin | None) -> RegistryClient:
    """A client of `config` with `login` (anonymous without one)."""
    raise RegistryUnavailableError(f"registry {config.name}: no {config.kind} client in this build")
