"""`remotegpu dev`'s secrets store: a key generated once into the data folder, or the fake Vault; and one
dev stack per data folder."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

import pytest

from remotegpu.core.platform.errors import RemoteGPUError
from remotegpu.core.platform.settings import Settings
from remotegpu.core.secrets.store import PLATFORM, SecretPath
from remotegpu.core.secrets.vault import AppRoleLogin, VaultSecretStore
from remotegpu.ops.dev_lock import data_dir_lock
from remotegpu.ops.dev_secrets import prepare_dev_secrets


def test_dev_generates_a_private_key_once_and_keeps_it(tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        first, where = prepare_dev_secrets(Settings(data_dir=tmp_path), stack)
        again, _ = prepare_dev_secrets(Settings(data_dir=tmp_path), stack)
    key_file = tmp_path / "secrets-key"
    assert first.secrets_key
    assert first.secrets_key == again.secrets_key == key_file.read_text().strip()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert str(key_file) in where
    assert first.secrets_key not in where


def test_dev_with_vault_runs_the_fake_and_logs_in_with_approle(tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        settings, where = prepare_dev_secrets(Settings(data_dir=tmp_path, secrets_backend="vault"), stack)
        assert settings.vault_url
        assert settings.vault_url in where
        assert settings.vault_auth == "approle"
        assert settings.vault_role_id
        assert settings.vault_secret_id
        store = VaultSecretStore(
            settings.vault_url, AppRoleLogin(settings.vault_role_id, settings.vault_secret_id)
        )
        store.put(SecretPath(PLATFORM, "x"), "y")
        assert store.list(PLATFORM) == ["x"]
    assert not (tmp_path / "secrets-key").exists()


def test_one_dev_stack_per_data_folder(tmp_path: Path) -> None:
    busy = rf"another remotegpu dev \(pid {os.getpid()}\) is using"
    with data_dir_lock(tmp_path), pytest.raises(RemoteGPUError, match=busy), data_dir_lock(tmp_path):
        pass
    with data_dir_lock(tmp_path):  # released on exit
        pass
