"""The built-in store: Fernet in Postgres, several keys, rotation (also through `remotegpu secrets rotate`)."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.engine import URL
from typer.testing import CliRunner

from remotegpu.core.models import StoredSecret
from remotegpu.core.platform.errors import SettingsError
from remotegpu.core.platform.settings import Settings
from remotegpu.core.secrets.builtin import SecretKeys, generate_secrets_key, rotate_secrets
from remotegpu.core.secrets.configured import open_secret_store
from remotegpu.core.secrets.store import PLATFORM, SecretPath, SecretScope, SecretsUnavailableError
from remotegpu.ops.cli.server.secrets import secrets_app
from remotegpu.tests.secrets_world import builtin_store, two_workspaces

OLD, NEW = generate_secrets_key(), generate_secrets_key()


def _ciphertexts(engine: Engine) -> list[bytes]:
    with engine.begin() as connection:
        return list(connection.execute(select(StoredSecret.ciphertext).order_by(StoredSecret.name)).scalars())


@pytest.fixture
def written(engine: Engine, sessions: object) -> dict[SecretPath, str | bytes]:
    """Secrets in two scopes written under OLD."""
    workspace, _ = two_workspaces(engine)
    values: dict[SecretPath, str | bytes] = {
        SecretPath(PLATFORM, "registry"): '{"auths": {}}',
        SecretPath(SecretScope.workspace(workspace), "ssh-key"): b"-----BEGIN OPENSSH PRIVATE KEY-----",
    }
    store = builtin_store(engine, OLD)
    for path, value in values.items():
        store.put(path, value)
    return values


def test_no_column_holds_the_value_in_the_clear(
    engine: Engine, written: dict[SecretPath, str | bytes]
) -> None:
    for ciphertext in _ciphertexts(engine):
        assert b"auths" not in ciphertext
        assert b"OPENSSH" not in ciphertext


def test_an_old_key_behind_the_new_one_still_decrypts(
    engine: Engine, written: dict[SecretPath, str | bytes]
) -> None:
    store = builtin_store(engine, f"{NEW},{OLD}")
    for path, value in written.items():
        assert store.get(path) == value


def test_without_the_key_it_was_written_with_a_secret_reads_as_a_clear_error(
    engine: Engine, written: dict[SecretPath, str | bytes]
) -> None:
    store = builtin_store(engine, NEW)
    with pytest.raises(SecretsUnavailableError, match="cannot be decrypted with any key of secrets_key"):
        store.get(SecretPath(PLATFORM, "registry"))


def test_rotate_re_encrypts_every_secret_so_the_old_key_can_go(
    engine: Engine, written: dict[SecretPath, str | bytes]
) -> None:
    before = _ciphertexts(engine)
    assert rotate_secrets(engine, SecretKeys(f"{NEW},{OLD}")) == len(written)
    assert all(new != old for new, old in zip(_ciphertexts(engine), before, strict=True))
    store = builtin_store(engine, NEW)
    for path, value in written.items():
        assert store.get(path) == value


def test_the_rotate_command_re_encrypts_with_the_first_key(
    engine: Engine, database_url: URL, written: dict[SecretPath, str | bytes]
) -> None:
    env = {
        "DATABASE_URL": database_url.render_as_string(hide_password=False),
        "REMOTEGPU_SECRETS_KEY": f"{NEW},{OLD}",
    }
    result = CliRunner().invoke(secrets_app, ["rotate"], env=env)
    assert result.exit_code == 0, result.output
    assert "Re-encrypted 2 secrets" in result.output
    assert builtin_store(engine, NEW).get(SecretPath(PLATFORM, "registry")) == '{"auths": {}}'
    assert NEW not in result.output
    assert OLD not in result.output


def test_a_malformed_key_is_a_settings_error_that_does_not_echo_it() -> None:
    with pytest.raises(SettingsError, match="key 2 of 2 is not a Fernet key") as caught:
        SecretKeys(f"{NEW},not-a-key-at-all")
    assert "not-a-key-at-all" not in str(caught.value)
    assert NEW not in repr(SecretKeys(f"{NEW},{OLD}"))


def test_settings_hide_every_secret_of_the_store(engine: Engine) -> None:
    settings = Settings(secrets_key=NEW, vault_token="hvs.token", vault_role_id="role", vault_secret_id="sid")
    shown = repr(settings)
    for secret in (NEW, "hvs.token", "role'", "sid"):
        assert secret not in shown
    assert NEW not in repr(open_secret_store(settings, engine))
    with pytest.raises(SettingsError, match="secrets_key: not set"):
        open_secret_store(Settings(), engine)
