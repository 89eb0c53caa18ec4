"""The Vault store through hvac against the contract fake: AppRole login, token renewal, and Vault's
refusals (sealed, 403, unreachable) as clear errors that never carry a value."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterator
from unittest.mock import ANY

import httpx
import pytest

from remotegpu.core.platform import clock
from remotegpu.core.secrets.store import (
    PLATFORM,
    SecretPath,
    SecretsAccessDeniedError,
    SecretScope,
    SecretsUnavailableError,
)
from remotegpu.core.secrets.vault import AppRoleLogin, TokenLogin, VaultSecretStore
from remotegpu.ops.fakes.vault import FakeVault
from remotegpu.ops.ports import bind
from remotegpu.tests.secrets_world import running_fake_vault, vault_store

START = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
VALUE = "vault-value-that-must-never-leak"
PATH = SecretPath(PLATFORM, "registry")


@pytest.fixture
def vault() -> Iterator[FakeVault]:
    yield from running_fake_vault()


def test_approle_login_keeps_secrets_under_the_workspace_prefix(vault: FakeVault) -> None:
    store = vault_store(vault, approle=True)
    workspace = uuid.uuid4()
    store.put(SecretPath(SecretScope.workspace(workspace), "ssh-key"), VALUE)
    assert len(vault.tokens_of("auth/approle/login")) == 1
    stored = vault.kv.read(f"remotegpu/workspaces/{workspace}/ssh-key", 0, clock.now())
    assert stored == (200, {"data": {"value": VALUE, "encoding": "text"}, "metadata": ANY})


def test_the_token_is_renewed_once_two_thirds_of_its_life_are_gone(vault: FakeVault) -> None:
    with clock.frozen_at(START) as advance:
        role_id, secret_id = vault.add_approle("remotegpu", token_ttl=dt.timedelta(seconds=60))
        store = VaultSecretStore(vault.url, AppRoleLogin(role_id, secret_id))
        store.put(PATH, VALUE)
        (token,) = vault.tokens_of("auth/approle/login")
        advance(dt.timedelta(seconds=30))
        assert store.get(PATH) == VALUE
        assert token.renewals == 0
        advance(dt.timedelta(seconds=15))
        assert store.get(PATH) == VALUE
        assert token.renewals == 1
        assert token.expires_at == START + dt.timedelta(seconds=105)
        advance(dt.timedelta(seconds=55))  # past its first expiry: only the renewal keeps it alive
        assert store.get(PATH) == VALUE
        assert token.renewals == 2
        assert len(vault.tokens_of("auth/approle/login")) == 1


def test_an_expired_approle_token_is_replaced_by_a_new_login(vault: FakeVault) -> None:
    with clock.frozen_at(START) as advance:
        role_id, secret_id = vault.add_approle("remotegpu", token_ttl=dt.timedelta(seconds=60))
        store = VaultSecretStore(vault.url, AppRoleLogin(role_id, secret_id))
        store.put(PATH, VALUE)
        advance(dt.timedelta(minutes=5))
        assert store.get(PATH) == VALUE
        assert len(vault.tokens_of("auth/approle/login")) == 2


def test_a_static_token_is_renewed_and_then_refused_once_expired(vault: FakeVault) -> None:
    with clock.frozen_at(START) as advance:
        token = vault.issue_token(ttl=dt.timedelta(seconds=60))
        store = VaultSecretStore(vault.url, TokenLogin(token))
        store.put(PATH, VALUE)
        advance(dt.timedelta(seconds=45))
        store.get(PATH)
        assert vault.token(token).renewals == 1
        advance(dt.timedelta(minutes=5))
        with pytest.raises(SecretsAccessDeniedError, match="permission denied") as refused:
            store.get(PATH)
        assert VALUE not in str(refused.value)


def test_a_sealed_vault_is_a_clear_error_until_unsealed(
    vault: FakeVault, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    store = vault_store(vault)
    store.put(PATH, VALUE)
    vault.seal()
    with pytest.raises(SecretsUnavailableError, match=r"is sealed") as sealed:
        store.put(PATH, VALUE + "2")
    assert VALUE not in str(sealed.value)
    assert sealed.value.__cause__ is None
    assert sealed.value.__suppress_context__
    httpx.put(f"{vault.url}/v1/sys/unseal", json={"key": vault.unseal_key}).raise_for_status()
    assert store.get(PATH) == VALUE
    assert not [record for record in caplog.records if VALUE in record.getMessage() + repr(record.__dict__)]


def test_a_bad_token_is_refused_with_a_clear_error(vault: FakeVault) -> None:
    with pytest.raises(SecretsAccessDeniedError, match="denied access to the platform scope"):
        VaultSecretStore(vault.url, TokenLogin("hvs.not-a-token")).list(PLATFORM)


def test_a_token_whose_policy_covers_another_workspace_is_refused(vault: FakeVault) -> None:
    mine, theirs = uuid.uuid4(), uuid.uuid4()
    token = vault.issue_token(paths=(f"remotegpu/workspaces/{mine}/",))
    store = VaultSecretStore(vault.url, TokenLogin(token))
    store.put(SecretPath(SecretScope.workspace(mine), "key"), VALUE)
    with pytest.raises(SecretsAccessDeniedError, match=f"workspace {theirs}: key"):
        store.put(SecretPath(SecretScope.workspace(theirs), "key"), VALUE)


def test_a_wrong_approle_secret_id_is_refused_with_a_clear_error(vault: FakeVault) -> None:
    role_id, _ = vault.add_approle("remotegpu")
    with pytest.raises(SecretsAccessDeniedError, match="refused the AppRole login"):
        VaultSecretStore(vault.url, AppRoleLogin(role_id, "wrong")).get(PATH)


def test_an_unreachable_vault_is_a_clear_error() -> None:
    with bind("127.0.0.1", 0) as listener:
        port = listener.getsockname()[1]
    store = VaultSecretStore(f"http://127.0.0.1:{port}", TokenLogin("hvs.x"), timeout=2)
    with pytest.raises(SecretsUnavailableError, match="is unreachable"):
        store.get(PATH)
