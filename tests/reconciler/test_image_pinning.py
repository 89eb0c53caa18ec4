"""The pinning step against a real registry (docker-registry 2.8) and real Postgres: the pod runs
`repo@digest`; a retag upstream changes neither a running environment, nor a re-applied unchanged spec,
nor a re-created pod, nor a plain restart, until `restart --pull`; a registry that is down is retried;
a tag that is gone fails the environment with a reason."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from remotegpu.core.accounts.membership import WorkspaceAccess
from remotegpu.core.accounts.users import Principal
from remotegpu.core.catalog.sync import sync_catalog
from remotegpu.core.environments.control import ApplyOutcome, apply_spec, restart
from remotegpu.core.environments.states import UserRole, WorkspaceRole
from remotegpu.core.environments.views import get_environment
from remotegpu.core.registry.configured import RegistryDocument, put_registry
from remotegpu.core.registry.credentials import RegistryLogin, set_login
from remotegpu.reconciler.leader import FencedOutError
from remotegpu.reconciler.loop import Reconciler
from remotegpu.reconciler.registry_sync import registry_sync_tick
from remotegpu.tests.reconciler.world import SPEC, World, build_world
from remotegpu.tests.registry_world import (
    FlakyProxy,
    ImagePusher,
    RunningRegistry,
    flaky_registry,
    pusher,
    registry,
    unique_repository,
)
from remotegpu.tests.specs import environment_spec

__all__ = ["flaky_registry", "pusher", "registry"]


@pytest.fixture
def world(engine: Engine, database_url: URL, sessions: object) -> Iterator[World]:
    made = build_world(engine, database_url, hosts=1)
    yield made
    made.reconciler.close()


def _principal(world: World) -> Principal:
    return Principal(world.user, "owner", "owner@example.org", UserRole.ADMIN)


def configure(world: World, registry: RunningRegistry, url: str | None = None) -> None:
    """The registry configured (`ml` public) with its login, and the catalog synced once."""
    with world.engine.begin() as connection:
        connection.execute(text("UPDATE users SET role = 'admin' WHERE id = :id"), {"id": world.user})
        config = put_registry(
            connection,
            _principal(world),
            "lab",
            RegistryDocument("oci", url or registry.url, ["ml"], host=registry.host),
        )
        set_login(
            connection,
            _principal(world),
            world.secrets,
            config,
            RegistryLogin(registry.username, registry.password),
        )
    assert world.reconciler.ctx.registries is not None
    sync_catalog(world.engine, world.reconciler.ctx.registries)


def pod_image(world: World, env: uuid.UUID) -> str:
    return world.cluster.pods[f"env-{env}"].spec.image


def pinned(world: World, env: uuid.UUID) -> Any:
    with world.engine.connect() as connection:
        return connection.execute(
            text(
                "SELECT phase, reason, last_error, generation, image_digest, image_pinned_reference"
                " FROM environments WHERE id = :id"
            ),
            {"id": env},
        ).one()


def make_due(world: World, env: uuid.UUID) -> None:
    """Skip the backoff a retry earned (the registry came back)."""
    with world.engine.begin() as connection:
        connection.execute(text("UPDATE environments SET next_attempt_at = now() WHERE id = :e"), {"e": env})


def test_the_pod_runs_the_pinned_digest_until_a_restart_with_pull(
    world: World, registry: RunningRegistry, pusher: ImagePusher
) -> None:
    repository = unique_repository("ml")
    first = pusher.image(repository, "v1")
    configure(world, registry)
    spec = {**SPEC, "image": f"{registry.host}/{repository}:v1"}
    env = world.submit("pinned", spec)

    world.reconciler.run_until_idle()

    assert world.phase(env) == "running"
    assert pod_image(world, env) == f"{registry.host}/{repository}@{first.digest}"
    row = pinned(world, env)
    assert (row.image_digest, row.image_pinned_reference) == (first.digest, spec["image"])
    assert "image_digest" not in str(row), "beside the observed state, not in the spec"
    with world.engine.connect() as connection:
        stored = connection.execute(
            text("SELECT spec FROM environments WHERE id = :id"), {"id": env}
        ).scalar_one()
        events = connection.execute(
            text("SELECT reason, message FROM events WHERE environment_id = :id AND kind = 'image'"),
            {"id": env},
        ).all()
    assert stored["image"] == spec["image"], "the spec keeps the tag"
    assert [(e.reason, e.message) for e in events] == [("ImagePinned", f"{spec['image']} is {first.digest}")]

    second = pusher.image(repository, "v1")  # the tag now names another manifest upstream
    assert second.digest != first.digest
    with world.engine.begin() as connection:
        name = connection.execute(
            text("SELECT name FROM workspaces WHERE id = :id"), {"id": world.workspace}
        ).scalar_one()
        access = WorkspaceAccess(world.workspace, name, WorkspaceRole.OWNER)
        again = apply_spec(connection, _principal(world), access, environment_spec("pinned", spec))
    assert again.outcome is ApplyOutcome.UNCHANGED
    world.reconciler.run_until_idle()
    assert pod_image(world, env) == f"{registry.host}/{repository}@{first.digest}", "re-apply: unchanged"

    world.cluster.vanish(env)
    make_due(world, env)  # as the resync would
    world.reconciler.run_until_idle()
    assert world.cluster.creates[f"env-{env}"] == 2
    assert pod_image(world, env) == f"{registry.host}/{repository}@{first.digest}", "re-created: same digest"

    with world.engine.begin() as connection:
        restart(connection, _principal(world), get_environment(connection, _principal(world), env))
    world.reconciler.run_until_idle()
    assert (world.phase(env), pinned(world, env).generation) == ("running", 2)
    assert pod_image(world, env) == f"{registry.host}/{repository}@{first.digest}", "a plain restart keeps it"

    with world.engine.begin() as connection:
        restart(connection, _principal(world), get_environment(connection, _principal(world), env), pull=True)
    world.reconciler.run_until_idle()
    assert world.phase(env) == "running"
    assert pod_image(world, env) == f"{registry.host}/{repository}@{second.digest}", "--pull resolves again"
    assert pinned(world, env).image_digest == second.digest


def test_a_registry_that_is_down_is_retried_and_the_pod_waits_for_its_digest(
    world: World, registry: RunningRegistry, flaky_registry: FlakyProxy, pusher: ImagePusher
) -> None:
    repository = unique_repository("ml")
    image = pusher.image(repository, "v1")
    configure(world, registry, flaky_registry.url)
    env = world.submit("patient", {**SPEC, "image": f"{registry.host}/{repository}:v1"})

    flaky_registry.fail_next(4, 503)  # the client's attempt and its three retries
    world.reconciler.run_until_idle()

    row = pinned(world, env)
    assert (row.phase, row.reason, row.image_digest) == ("scheduled", "RegistryUnavailable", None)
    assert "503" in row.last_error
    assert registry.password not in row.last_error
    assert world.cluster.live_pods() == [], "no pod runs an unpinned tag"

    make_due(world, env)
    world.reconciler.run_until_idle()
    assert world.phase(env) == "running"
    assert pod_image(world, env) == f"{registry.host}/{repository}@{image.digest}"


def test_a_tag_gone_upstream_fails_the_environment_with_a_reason(
    world: World, registry: RunningRegistry, pusher: ImagePusher
) -> None:
    repository = unique_repository("ml")
    image = pusher.image(repository, "v1")
    configure(world, registry)
    pusher.delete_manifest(repository, image.digest)  # gone before the catalog's next sync
    env = world.submit("orphan", {**SPEC, "image": f"{registry.host}/{repository}:v1"})

    world.reconciler.run_until_idle()

    row = pinned(world, env)
    assert (row.phase, row.reason) == ("failed", "ImageGone")
    assert "no longer exists at registry lab" in row.last_error
    assert world.cluster.live_pods() == []
    assert world.active_gpu_claims() == 0


def test_the_leader_syncs_the_catalog_and_a_replaced_leader_writes_nothing(
    world: World, registry: RunningRegistry, pusher: ImagePusher
) -> None:
    repository = unique_repository("ml")
    configure(world, registry)
    pusher.image(repository, "v1")
    ctx = world.reconciler.ctx
    world.reconciler.run_until_idle()  # leads: its epoch is current
    assert "registry-sync" in [name for _, _, name in world.reconciler._job_specs]

    def tags() -> set[str]:
        with world.engine.connect() as connection:
            found = connection.execute(
                text("SELECT tag FROM images WHERE repository = :r"), {"r": repository}
            )
            return set(found.scalars())

    (report,) = registry_sync_tick(ctx)
    assert report.error is None
    assert tags() == {"v1"}

    pusher.image(repository, "v2")
    world.reconciler.elector.resign()  # the old leader pauses; another replica takes over
    successor = Reconciler(
        world.url, world.cluster, ctx.settings, identity="successor", listen=False, secrets=world.secrets
    )
    try:
        successor.run_until_idle()
        with pytest.raises(FencedOutError):
            registry_sync_tick(ctx)
        assert tags() == {"v1"}, "the fenced-out leader wrote nothing"
        registry_sync_tick(successor.ctx)
        assert tags() == {"v1", "v2"}
    finally:
        successor.close()
