"""The keys Secret of an environment with SSH access: written before its pod, holding the owner's keys
(and the workspace admins' when the workspace says so) and its platform key, rewritten within one
resync when a key goes, and deleted with the environment, platform key included."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from remotegpu.core.accounts.ssh_keys import add_ssh_key, remove_ssh_key
from remotegpu.core.environments.access_keys import platform_key_path
from remotegpu.core.environments.states import DesiredState
from remotegpu.core.platform import clock
from remotegpu.core.secrets.builtin import EncryptedSecretStore
from remotegpu.core.secrets.store import (
    SecretNotFoundError,
    SecretPath,
    SecretScope,
    SecretsUnavailableError,
    SecretValue,
)
from remotegpu.tests.allocation_world import make_user
from remotegpu.tests.core.test_ssh_keys import ed25519_line
from remotegpu.tests.reconciler.world import World, build_world
from remotegpu.tests.secrets_world import builtin_store

START = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
RESYNC = dt.timedelta(seconds=11)  # past the resync period


@pytest.fixture
def store(engine: Engine) -> EncryptedSecretStore:
    return builtin_store(engine)


@pytest.fixture
def world(
    engine: Engine, database_url: URL, sessions: object, store: EncryptedSecretStore
) -> Iterator[World]:
    with clock.frozen_at(START):
        made = build_world(engine, database_url, secrets=store)
        yield made
        made.reconciler.close()


def _authorized(world: World, env: uuid.UUID) -> list[str]:
    data = world.cluster.secrets[f"env-{env}-ssh"]
    assert set(data) == {"authorized_keys"}
    return data["authorized_keys"].splitlines()


def _member(world: World, role: str) -> uuid.UUID:
    with world.engine.begin() as connection:
        user = make_user(connection)
        connection.execute(
            text("INSERT INTO workspace_members (workspace_id, user_id, role) VALUES (:w, :u, :r)"),
            {"w": world.workspace, "u": user, "r": role},
        )
    return user


def test_the_keys_secret_holds_the_owner_s_keys_and_the_platform_key(
    world: World, store: EncryptedSecretStore, caplog: pytest.LogCaptureFixture
) -> None:
    mine, admin_key = ed25519_line("owner"), ed25519_line("admin")
    admin = _member(world, "admin")
    with world.engine.begin() as connection:
        add_ssh_key(connection, world.user, mine)
        add_ssh_key(connection, admin, admin_key)
    with caplog.at_level(logging.DEBUG):
        env = world.submit("box")
        world.reconciler.run_until_idle()
    assert world.phase(env) == "running"
    lines = _authorized(world, env)
    assert lines[:-1] == [mine], "the admin's key stays out while the workspace setting is off"
    private = store.get(platform_key_path(world.workspace, env))
    assert isinstance(private, str)
    loaded = serialization.load_ssh_private_key(private.encode(), password=None)
    public = loaded.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    assert lines[-1] == f"{public.decode()} remotegpu-platform"
    assert private.splitlines()[1] not in caplog.text, "the platform private key is never logged"

    with world.engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE workspaces SET settings = '{\"admin_keys_in_member_environments\": true}' WHERE id = :w"
            ),
            {"w": world.workspace},
        )
    with clock.frozen_at(START + RESYNC):
        world.reconciler.run_until_idle()
    assert sorted(_authorized(world, env)[:-1]) == sorted([mine, admin_key])
    assert _authorized(world, env)[-1] == lines[-1], "the platform key is generated once"


def test_a_removed_key_is_gone_after_one_resync_and_unchanged_keys_are_not_rewritten(world: World) -> None:
    keep, drop = ed25519_line("keep"), ed25519_line("drop")
    with world.engine.begin() as connection:
        add_ssh_key(connection, world.user, keep)
        dropped = add_ssh_key(connection, world.user, drop)
    env = world.submit("box")
    world.reconciler.run_until_idle()
    assert sorted(_authorized(world, env)[:-1]) == sorted([keep, drop])
    name = f"env-{env}-ssh"
    assert world.cluster.secret_writes[name] == 1, "written once, before the pod"

    with clock.frozen_at(START + RESYNC):
        world.reconciler.run_until_idle()
    assert world.cluster.secret_writes[name] == 1, "a resync with the same keys writes nothing"

    with world.engine.begin() as connection:
        remove_ssh_key(connection, world.user, dropped.id)
    with clock.frozen_at(START + 2 * RESYNC):
        world.reconciler.run_until_idle()
    assert _authorized(world, env)[:-1] == [keep]
    assert world.cluster.secret_writes[name] == 2


def test_delete_removes_the_secret_and_the_platform_key(world: World, store: EncryptedSecretStore) -> None:
    env = world.submit("box")
    world.reconciler.run_until_idle()
    assert f"env-{env}-ssh" in world.cluster.secrets
    store.get(platform_key_path(world.workspace, env))

    world.desire(env, DesiredState.STOPPED)
    world.reconciler.run_until_idle()
    assert world.cluster.secrets == {}, "the keys go with the pod"
    world.desire(env, DesiredState.RUNNING)
    world.reconciler.run_until_idle()
    assert f"env-{env}-ssh" in world.cluster.secrets

    world.desire(env, DesiredState.DELETED)
    world.reconciler.run_until_idle()
    assert world.cluster.secrets == {}
    with pytest.raises(SecretNotFoundError):
        store.get(platform_key_path(world.workspace, env))


def test_an_environment_without_ssh_gets_no_keys_secret(world: World) -> None:
    env = world.submit("plain", {"image": "ubuntu:24.04", "command": ["sleep", "infinity"]})
    world.reconciler.run_until_idle()
    assert world.phase(env) == "running"
    assert world.cluster.secrets == {}


class _SealedStore:
    """A secrets store that cannot answer (a sealed Vault): every call says so."""

    def put(self, path: SecretPath, value: SecretValue) -> None:
        raise SecretsUnavailableError("Vault is sealed; unseal it")

    def get(self, path: SecretPath) -> SecretValue:
        raise SecretsUnavailableError("Vault is sealed; unseal it")

    def delete(self, path: SecretPath) -> bool:
        raise SecretsUnavailableError("Vault is sealed; unseal it")

    def list(self, scope: SecretScope) -> list[str]:
        raise SecretsUnavailableError("Vault is sealed; unseal it")


def test_an_unavailable_secrets_store_is_retried_and_no_pod_starts_without_its_keys(
    engine: Engine, database_url: URL, sessions: object
) -> None:
    with clock.frozen_at(START):
        sealed = build_world(engine, database_url, secrets=_SealedStore())
        try:
            env = sealed.submit("box")
            sealed.reconciler.run_until_idle()
            row = sealed.row(env)
            assert (row.reason, row.retry_count) == ("SecretsUnavailable", 1)
            assert "sealed" in row.last_error
            assert sealed.cluster.live_pods() == [], "the pod waits for its keys"
        finally:
            sealed.reconciler.close()
