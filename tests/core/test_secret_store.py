"""The secrets store's contract, held by both backends: the built-in one on real Postgres, and Vault's
through hvac over real HTTP against the contract fake."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from remotegpu.core.platform.errors import InvalidInputError
from remotegpu.core.secrets.store import (
    PLATFORM,
    SecretNotFoundError,
    SecretPath,
    SecretScope,
    SecretStore,
)
from remotegpu.ops.fakes.vault import FakeVault
from remotegpu.tests.secrets_world import builtin_store, running_fake_vault, two_workspaces, vault_store

VALUE = "s3cr3t-value-that-must-never-leak"


@pytest.fixture
def fake_vault() -> Iterator[FakeVault]:
    yield from running_fake_vault()


@pytest.fixture(params=["builtin", "vault"])
def store(request: pytest.FixtureRequest, engine: Engine, sessions: object) -> SecretStore:
    if request.param == "builtin":
        return builtin_store(engine)
    return vault_store(request.getfixturevalue("fake_vault"))


@pytest.fixture
def workspaces(engine: Engine, sessions: object) -> tuple[uuid.UUID, uuid.UUID]:
    return two_workspaces(engine)


def test_a_value_reads_back_as_the_type_it_was_written_as(store: SecretStore) -> None:
    store.put(SecretPath(PLATFORM, "text"), VALUE)
    store.put(SecretPath(PLATFORM, "binary"), b"\x00\xffkey")
    assert store.get(SecretPath(PLATFORM, "text")) == VALUE
    assert store.get(SecretPath(PLATFORM, "binary")) == b"\x00\xffkey"
    assert isinstance(store, SecretStore)


def test_a_second_put_replaces_the_value(store: SecretStore) -> None:
    path = SecretPath(PLATFORM, "registry")
    store.put(path, "first")
    store.put(path, "second")
    assert store.get(path) == "second"
    assert store.list(PLATFORM) == ["registry"]


def test_a_deleted_secret_is_gone(store: SecretStore) -> None:
    path = SecretPath(PLATFORM, "gone")
    store.put(path, VALUE)
    assert store.delete(path) is True
    assert store.delete(path) is False
    with pytest.raises(SecretNotFoundError, match="no secret 'gone' in the platform scope"):
        store.get(path)
    assert store.list(PLATFORM) == []


def test_workspaces_see_only_their_own_secrets(
    store: SecretStore, workspaces: tuple[uuid.UUID, uuid.UUID]
) -> None:
    first, second = (SecretScope.workspace(ws) for ws in workspaces)
    store.put(SecretPath(first, "ssh-key"), "first's")
    store.put(SecretPath(first, "token"), "first's token")
    store.put(SecretPath(second, "ssh-key"), "second's")
    store.put(SecretPath(PLATFORM, "ssh-key"), "platform's")
    assert store.get(SecretPath(first, "ssh-key")) == "first's"
    assert store.get(SecretPath(second, "ssh-key")) == "second's"
    assert store.get(SecretPath(PLATFORM, "ssh-key")) == "platform's"
    assert store.list(first) == ["ssh-key", "token"]
    assert store.list(second) == ["ssh-key"]
    assert store.list(PLATFORM) == ["ssh-key"]
    with pytest.raises(SecretNotFoundError):
        store.get(SecretPath(second, "token"))
    assert store.delete(SecretPath(second, "ssh-key"))
    assert store.get(SecretPath(first, "ssh-key")) == "first's"


def test_a_name_cannot_leave_its_scope() -> None:
    for name in ("../other", "a/b", "", ".hidden", "x" * 129):
        with pytest.raises(InvalidInputError):
            SecretPath(PLATFORM, name)


def test_values_never_reach_errors_logs_or_reprs(
    store: SecretStore, workspaces: tuple[uuid.UUID, uuid.UUID], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    scope = SecretScope.workspace(workspaces[0])
    store.put(SecretPath(scope, "leaky"), VALUE)
    store.put(SecretPath(scope, "leaky"), VALUE.encode())
    assert store.get(SecretPath(scope, "leaky")) == VALUE.encode()
    messages = [repr(store)]
    with pytest.raises(SecretNotFoundError) as missing:
        store.get(SecretPath(scope, "other"))
    messages.append(str(missing.value))
    with pytest.raises(TypeError) as wrong_type:
        store.put(SecretPath(scope, "leaky"), 42)  # type: ignore[arg-type]
    messages.append(str(wrong_type.value))
    store.delete(SecretPath(scope, "leaky"))
    messages += [record.getMessage() + repr(record.__dict__) for record in caplog.records]
    assert not [message for message in messages if VALUE in message]
