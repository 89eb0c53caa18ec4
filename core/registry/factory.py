"""The client of a configured registry: the OCI Distribution client or the Harbor client, by its kind."""

from __future__ import annotations

from remotegpu.core.registry.auth import RegistryCredentials
from remotegpu.core.registry.client import RegistryClient
from remotegpu.core.registry.configured import RegistryConfig
from remotegpu.core.registry.credentials import RegistryLogin
from remotegpu.core.registry.harbor import HarborClient
from remotegpu.core.registry.oci import OciRegistryClient


def default_client_factory(config: RegistryConfig, login: RegistryLogin | None) -> RegistryClient:
    """A client of `config` with `login` (anonymous without one)."""
    credentials = None if login is None else RegistryCredentials(login.username, login.password)
    if config.kind == "harbor":
        return HarborClient(config.url, credentials)
    return OciRegistryClient(config.url, credentials)
