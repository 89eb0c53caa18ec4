"""The secrets store the settings ask for: built-in (the default) or Vault."""

from __future__ import annotations

import logging

from sqlalchemy import Engine

from remotegpu.core.platform.errors import SettingsError
from remotegpu.core.platform.settings import Settings
from remotegpu.core.secrets.store import SecretStore

log = logging.getLogger(__name__)


def open_secret_store(settings: Settings, engine: Engine) -> SecretStore:
    """A store for `settings.secrets_backend`; raises `SettingsError` naming what is missing. Nothing is
    contacted yet: Vault is logged in to on first use."""
    if settings.secrets_backend == "vault":
        from remotegpu.core.secrets.vault import AppRoleLogin, TokenLogin, VaultLogin, VaultSecretStore

        if not settings.vault_url:
            raise SettingsError("vault_url: required when secrets_backend is vault (e.g. https://vault:8200)")
        login: VaultLogin
        if settings.vault_auth == "approle":
            if not (settings.vault_role_id and settings.vault_secret_id):
                raise SettingsError(
                    "vault_role_id and vault_secret_id: both required when vault_auth is approle"
                )
            login = AppRoleLogin(settings.vault_role_id, settings.vault_secret_id)
        else:
            if not settings.vault_token:
                raise SettingsError("vault_token: required when vault_auth is token")
            login = TokenLogin(settings.vault_token)
        return VaultSecretStore(
            settings.vault_url, login, mount=settings.vault_mount, prefix=settings.vault_prefix
        )

    from remotegpu.core.secrets.builtin import EncryptedSecretStore, SecretKeys

    if not settings.secrets_key:
        raise SettingsError(
            "secrets_key: not set; generate one with `remotegpu secrets generate-key` and export"
            " REMOTEGPU_SECRETS_KEY (or set secrets_backend = vault)"
        )
    return EncryptedSecretStore(engine, SecretKeys(settings.secrets_key))


def secret_store_if_configured(settings: Settings, engine: Engine) -> SecretStore | None:
    """`open_secret_store`, or None when the built-in store (the default) has no key: a process without
    secrets still serves what needs none, and what needs one says which setting to set."""
    if settings.secrets_backend == "builtin" and not settings.secrets_key:
        log.warning("Secrets store not configured: set secrets_key (or secrets_backend = vault)")
        return None
    return open_secret_store(settings, engine)
