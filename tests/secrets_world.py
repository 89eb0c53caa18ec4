"""Fixtures' building blocks for the secrets store tests: a fake Vault per test, stores on both backends."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

from sqlalchemy import Engine

from remotegpu.core.secrets.builtin import EncryptedSecretStore, SecretKeys, generate_secrets_key
from remotegpu.core.secrets.vault import AppRoleLogin, TokenLogin, VaultSecretStore
from remotegpu.ops.fakes.vault import FakeVault
from remotegpu.tests.allocation_world import make_user, make_workspace


def running_fake_vault() -> Iterator[FakeVault]:
    """A fake Vault on a free port; fails the test if it saw a request it does not implement."""
    with FakeVault() as vault:
        yield vault
        assert vault.unexpected == [], "the store made calls the fake Vault does not implement"


def builtin_store(engine: Engine, key: str | None = None) -> EncryptedSecretStore:
    return EncryptedSecretStore(engine, SecretKeys(key or generate_secrets_key()))


def vault_store(vault: FakeVault, *, approle: bool = False) -> VaultSecretStore:
    if approle:
        role_id, secret_id = vault.add_approle("remotegpu")
        return VaultSecretStore(vault.url, AppRoleLogin(role_id, secret_id), now=vault.now)
    return VaultSecretStore(vault.url, TokenLogin(vault.root_token), now=vault.now)


def two_workspaces(engine: Engine) -> tuple[uuid.UUID, uuid.UUID]:
    with engine.begin() as connection:
        owner = make_user(connection)
        return make_workspace(connection, owner), make_workspace(connection, owner)
