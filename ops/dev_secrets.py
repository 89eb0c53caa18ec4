"""The secrets store of `remotegpu dev`: built-in with a key kept in the data folder, or, with
`--secrets vault` and no vault_url, the contract fake of Vault with an AppRole for the platform."""

from __future__ import annotations

import contextlib

import msgspec

from remotegpu.core.platform.settings import Settings
from remotegpu.core.secrets.builtin import SecretKeys, generate_secrets_key
from remotegpu.core.secrets.store import PLATFORM
from remotegpu.core.secrets.vault import AppRoleLogin, VaultSecretStore
from remotegpu.ops.bootstrap import persistent_secret
from remotegpu.ops.fakes.vault import FakeVault


def prepare_dev_secrets(settings: Settings, stack: contextlib.ExitStack) -> tuple[Settings, str]:
    """The settings with a usable secrets store, and a line saying where secrets live. A fake Vault it
    starts is stopped by `stack`."""
    if settings.secrets_backend == "vault":
        if settings.vault_url:
            return settings, f"Vault at {settings.vault_url} (mount {settings.vault_mount})"
        vault = stack.enter_context(FakeVault(mount=settings.vault_mount))
        role_id, secret_id = vault.add_approle("remotegpu")
        settings = msgspec.structs.replace(
            settings,
            vault_url=vault.url,
            vault_auth="approle",
            vault_role_id=role_id,
            vault_secret_id=secret_id,
        )
        VaultSecretStore(vault.url, AppRoleLogin(role_id, secret_id), mount=settings.vault_mount).list(
            PLATFORM
        )
        return settings, f"Vault (the contract fake, AppRole login) at {vault.url}"
    if settings.secrets_key:
        SecretKeys(settings.secrets_key)  # a malformed key fails now, not at the first secret
        return settings, "built-in, encrypted in Postgres under secrets_key"
    key_file = (settings.data_dir / "secrets-key").resolve()
    key = persistent_secret(key_file, generate=generate_secrets_key)
    return msgspec.structs.replace(
        settings, secrets_key=key
    ), f"built-in, encrypted in Postgres (key in {key_file})"
