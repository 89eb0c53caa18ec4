"""Catalog sync against a real registry (Debian's docker-registry 2.8) and real Postgres: pushed images
appear, public or in their workspace's catalog by the project mapping; a manifest deleted upstream is
marked gone; a registry that is down changes nothing; a second sync changes nothing; and a spec naming
an unknown tag or a gone image is refused with the known tags, with no registry call."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from remotegpu.core.accounts.users import Principal
from remotegpu.core.catalog.images import ImageGoneError, resolve_image
from remotegpu.core.catalog.sync import sync_catalog
from remotegpu.core.environments.states import UserRole
from remotegpu.core.platform.errors import InvalidInputError
from remotegpu.core.registry.auth import RegistryCredentials
from remotegpu.core.registry.configured import RegistryConfig, RegistryDocument, put_registry
from remotegpu.core.registry.credentials import RegistryLogin, set_login
from remotegpu.core.registry.directory import ClientFactory, RegistryDirectory
from remotegpu.core.registry.factory import default_client_factory
from remotegpu.core.registry.oci import OciRegistryClient
from remotegpu.core.secrets.store import SecretStore
from remotegpu.tests.allocation_world import make_user, make_workspace
from remotegpu.tests.registry_world import (
    FlakyProxy,
    ImagePusher,
    RunningRegistry,
    flaky_registry,
    pusher,
    registry,
    unique_repository,
)
from remotegpu.tests.secrets_world import builtin_store

__all__ = ["flaky_registry", "pusher", "registry"]


class Lab:
    """A workspace, a platform admin, and the registry configured: `ml` public, `team` the workspace's."""

    def __init__(
        self,
        engine: Engine,
        store: SecretStore,
        registry: RunningRegistry,
        url: str,
        factory: ClientFactory = default_client_factory,
    ) -> None:
        self.engine = engine
        with engine.begin() as connection:
            self.admin = make_user(connection)
            connection.execute(text("UPDATE users SET role = 'admin' WHERE id = :id"), {"id": self.admin})
            self.workspace = make_workspace(connection, self.admin, name="research")
            self.other = make_workspace(connection, self.admin, name="elsewhere")
            principal = Principal(self.admin, "root", "root@example.org", UserRole.ADMIN)
            config = put_registry(
                connection,
                principal,
                "lab",
                RegistryDocument("oci", url, ["ml"], {"team": "research"}, host=registry.host),
            )
            set_login(
                connection, principal, store, config, RegistryLogin(registry.username, registry.password)
            )
        self.directory = RegistryDirectory(engine, store, factory)

    def sync(self) -> Any:
        (report,) = sync_catalog(self.engine, self.directory)
        return report

    def entries(self) -> dict[str, Any]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                text("SELECT repository || ':' || tag AS ref, * FROM images ORDER BY repository, tag")
            ).all()
        return {row.ref: row for row in rows}


@pytest.fixture
def lab(engine: Engine, sessions: sessionmaker[Session], registry: RunningRegistry) -> Lab:
    return Lab(engine, builtin_store(engine), registry, registry.url)


def test_pushed_images_appear_public_or_in_their_workspace_by_project(lab: Lab, pusher: ImagePusher) -> None:
    public, private, unmapped = unique_repository("ml"), unique_repository("team"), unique_repository("misc")
    image = pusher.image(public, "1.0")
    pusher.retag(public, image.digest, "latest")
    index = pusher.index(private, "cuda12")
    pusher.image(unmapped, "1.0")

    report = lab.sync()

    entries = lab.entries()
    assert report.error is None
    for tag in ("1.0", "latest"):
        entry = entries[f"{public}:{tag}"]
        assert (entry.visibility, entry.owner_workspace_id, entry.digest) == ("public", None, image.digest)
        assert (entry.source, entry.size_bytes, entry.gone_at) == ("oci", image.size_bytes, None)
        assert entry.synced_at is not None
    team = entries[f"{private}:cuda12"]
    assert (team.visibility, team.owner_workspace_id) == ("private", lab.workspace)
    assert (team.digest, team.size_bytes) == (index.digest, index.size_bytes), (
        "an index: its largest platform"
    )
    assert not any(ref.startswith(unmapped) for ref in entries), "no mapping covers it: not synced"
    with lab.engine.connect() as connection:
        synced = connection.execute(text("SELECT last_synced_at, last_sync_error FROM registries")).one()
    assert synced.last_synced_at is not None
    assert synced.last_sync_error is None


def test_a_second_sync_of_an_unchanged_registry_changes_nothing(lab: Lab, pusher: ImagePusher) -> None:
    repository = unique_repository("ml")
    pusher.image(repository, "v1")
    lab.sync()
    before = {ref: (r.id, r.digest, r.gone_at) for ref, r in lab.entries().items()}

    report = lab.sync()

    assert report.gone == 0
    assert {ref: (r.id, r.digest, r.gone_at) for ref, r in lab.entries().items()} == before


def test_a_manifest_deleted_upstream_is_marked_gone_and_a_retag_moves_the_digest(
    lab: Lab, pusher: ImagePusher
) -> None:
    repository = unique_repository("ml")
    first = pusher.image(repository, "v1")
    kept = pusher.image(repository, "v2")
    lab.sync()

    pusher.delete_manifest(repository, first.digest)
    newer = pusher.image(repository, "next")
    pusher.retag(repository, newer.digest, "v2")
    report = lab.sync()

    entries = lab.entries()
    assert report.gone == 1
    assert entries[f"{repository}:v1"].gone_at is not None, "kept, marked gone"
    assert entries[f"{repository}:v2"].digest == newer.digest != kept.digest
    assert entries[f"{repository}:v2"].gone_at is None

    pusher.retag(repository, newer.digest, "v1")  # back upstream: no longer gone
    lab.sync()
    assert lab.entries()[f"{repository}:v1"].gone_at is None


def test_a_registry_that_is_down_changes_no_entry_and_says_why(
    engine: Engine,
    sessions: sessionmaker[Session],
    registry: RunningRegistry,
    flaky_registry: FlakyProxy,
    pusher: ImagePusher,
) -> None:
    def impatient(config: RegistryConfig, login: RegistryLogin | None) -> OciRegistryClient:
        assert login is not None
        credentials = RegistryCredentials(login.username, login.password)
        return OciRegistryClient(config.url, credentials, retry_delays=(0.0, 0.0))

    lab = Lab(engine, builtin_store(engine), registry, flaky_registry.url, impatient)
    repository = unique_repository("ml")
    pusher.image(repository, "v1")
    lab.sync()
    before = {ref: (r.digest, r.gone_at, r.synced_at) for ref, r in lab.entries().items()}

    flaky_registry.fail_next(50, 503)
    report = lab.sync()

    assert report.error is not None
    assert "503" in report.error
    assert registry.password not in report.error
    assert {ref: (r.digest, r.gone_at, r.synced_at) for ref, r in lab.entries().items()} == before
    with engine.connect() as connection:
        assert connection.execute(text("SELECT last_sync_error FROM registries")).scalar_one() == report.error


def test_specs_are_checked_against_the_synced_catalog(
    lab: Lab, pusher: ImagePusher, registry: RunningRegistry
) -> None:
    repository = unique_repository("team")
    gone = pusher.image(repository, "old")
    pusher.image(repository, "new")
    lab.sync()
    pusher.delete_manifest(repository, gone.digest)
    lab.sync()
    reference = f"{registry.host}/{repository}"

    with lab.engine.connect() as connection:
        assert resolve_image(connection, lab.workspace, f"{reference}:new") == f"{reference}:new"
        assert resolve_image(connection, lab.workspace, f"{repository}:new") == f"{reference}:new", "by name"
        with pytest.raises(InvalidInputError) as unknown:
            resolve_image(connection, lab.workspace, f"{reference}:nope")
        assert unknown.value.field == "$.image"
        assert "known tags" in str(unknown.value)
        assert "new" in str(unknown.value)
        with pytest.raises(ImageGoneError) as removed:
            resolve_image(connection, lab.workspace, f"{reference}:old")
        assert "removed from its registry lab" in str(removed.value)
        assert "new" in str(removed.value)
        with pytest.raises(InvalidInputError) as hidden:  # another workspace's private entries: unknown
            resolve_image(connection, lab.other, f"{reference}:new")
        assert "knows no tag" in str(hidden.value)
        unsynced = "registry.unsynced.example.org/any/thing:1"
        assert resolve_image(connection, lab.workspace, unsynced) == unsynced, "not configured: passes"
