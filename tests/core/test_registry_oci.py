"""The OCI Distribution client against a real registry (Debian's docker-registry 2.8, htpasswd auth):
catalog and tags page by page, digests and sizes of manifests and indexes of both formats, a retag, a
manifest deleted by digest, refused credentials, temporary failures retried, and no password let out."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from remotegpu.core.registry import manifests
from remotegpu.core.registry.auth import RegistryCredentials
from remotegpu.core.registry.client import (
    ReferenceGoneError,
    RegistryAuthError,
    RegistryUnavailableError,
    Repository,
)
from remotegpu.core.registry.oci import OciRegistryClient
from remotegpu.tests.registry_world import (
    INDEX_FOR,
    FlakyProxy,
    ImagePusher,
    RunningRegistry,
    flaky_registry,
    free_port,
    pusher,
    registry,
    unique_repository,
)
from remotegpu.tests.secret_scan import SecretScan, secret_scan

__all__ = ["flaky_registry", "pusher", "registry", "secret_scan"]

NO_WAIT = (0.0, 0.0)


@pytest.fixture
def client(registry: RunningRegistry) -> Iterator[OciRegistryClient]:
    credentials = RegistryCredentials(registry.username, registry.password)
    reading = OciRegistryClient(registry.url, credentials, retry_delays=NO_WAIT, page_size=2)
    yield reading
    reading.close()


def test_catalog_lists_every_pushed_repository_across_link_pages(
    client: OciRegistryClient, pusher: ImagePusher
) -> None:
    names = [unique_repository("team-a"), unique_repository("team-b"), unique_repository("team-b")]
    for name in names:
        pusher.image(name, "v1")
    names.append("plain-" + unique_repository().split("-")[-1])
    pusher.image(names[-1], "latest")

    listed = list(client.repositories())

    assert len(listed) == len({r.name for r in listed}), "a page was read twice"
    assert {
        Repository(names[0], "team-a"),
        Repository(names[1], "team-b"),
        Repository(names[2], "team-b"),
        Repository(names[3], ""),
    } <= set(listed)


def test_tags_of_a_repository_are_all_listed(client: OciRegistryClient, pusher: ImagePusher) -> None:
    repository = unique_repository()
    for tag in ("a", "b", "c", "d", "e"):
        pusher.image(repository, tag)

    assert sorted(client.tags(repository)) == ["a", "b", "c", "d", "e"]


@pytest.mark.parametrize("media_type", [manifests.OCI_MANIFEST, manifests.DOCKER_MANIFEST])
def test_resolve_gives_the_manifest_digest_size_and_type(
    client: OciRegistryClient, pusher: ImagePusher, media_type: str
) -> None:
    repository = unique_repository()
    pushed = pusher.image(repository, "24.05", media_type=media_type, layer_size=3000)

    resolved = client.resolve(repository, "24.05")

    assert resolved.digest == pushed.digest
    assert resolved.media_type == media_type
    assert resolved.size_bytes == pushed.size_bytes
    assert resolved.size_bytes is not None
    assert resolved.size_bytes > 3000


@pytest.mark.parametrize("media_type", [manifests.OCI_MANIFEST, manifests.DOCKER_MANIFEST])
def test_an_index_resolves_to_its_own_digest_sized_by_its_largest_platform(
    client: OciRegistryClient, pusher: ImagePusher, media_type: str
) -> None:
    repository = unique_repository()
    index = pusher.index(repository, "multi", media_type=media_type, layer_sizes=(1000, 9000))

    resolved = client.resolve(repository, "multi")

    assert resolved.digest == index.digest
    assert resolved.digest not in {child.digest for child in index.children}
    assert resolved.media_type == INDEX_FOR[media_type]
    assert resolved.size_bytes == max(child.size_bytes for child in index.children)
    assert resolved.size_bytes is not None
    assert resolved.size_bytes > 9000


def test_artifacts_group_every_tag_naming_the_same_manifest(
    client: OciRegistryClient, pusher: ImagePusher
) -> None:
    repository = unique_repository()
    first = pusher.image(repository, "v1")
    pusher.retag(repository, "v1", "stable")
    second = pusher.index(repository, "v2")
    pusher.retag(repository, "v2", "latest")

    artifacts = {a.digest: a for a in client.artifacts(repository)}

    assert set(artifacts) == {first.digest, second.digest}
    assert artifacts[first.digest].tags == ("stable", "v1")
    assert artifacts[first.digest].size_bytes == first.size_bytes
    assert artifacts[second.digest].tags == ("latest", "v2")
    assert artifacts[second.digest].size_bytes == second.size_bytes
    assert all(a.repository == repository for a in artifacts.values())


def test_a_retag_upstream_changes_what_the_tag_resolves_to(
    client: OciRegistryClient, pusher: ImagePusher
) -> None:
    repository = unique_repository()
    old = pusher.image(repository, "latest")
    assert client.resolve(repository, "latest").digest == old.digest
    new = pusher.image(repository, "v2")

    pusher.retag(repository, "v2", "latest")

    assert client.resolve(repository, "latest").digest == new.digest
    assert {a.digest: a.tags for a in client.artifacts(repository)} == {new.digest: ("latest", "v2")}


def test_a_manifest_deleted_by_digest_is_gone_with_its_tags(
    client: OciRegistryClient, pusher: ImagePusher
) -> None:
    repository = unique_repository()
    kept = pusher.image(repository, "keep")
    removed = pusher.image(repository, "remove")
    pusher.retag(repository, "remove", "also-remove")
    assert client.resolve(repository, "remove").digest == removed.digest

    pusher.delete_manifest(repository, removed.digest)

    with pytest.raises(ReferenceGoneError, match=r"manifests/.* answered 404"):
        client.resolve(repository, "remove")
    with pytest.raises(ReferenceGoneError):
        client.resolve(repository, "also-remove")
    assert [(a.digest, a.tags) for a in client.artifacts(repository)] == [(kept.digest, ("keep",))]


def test_an_unknown_repository_or_tag_is_gone(client: OciRegistryClient, pusher: ImagePusher) -> None:
    repository = unique_repository()
    pusher.image(repository, "v1")

    with pytest.raises(ReferenceGoneError, match="NAME_UNKNOWN"):
        list(client.artifacts(unique_repository()))
    with pytest.raises(ReferenceGoneError, match=r"manifests/.* answered 404"):
        client.resolve(repository, "v9")
    with pytest.raises(ReferenceGoneError, match="not a valid"):
        client.resolve("../etc", "v1")


def test_a_refused_password_is_an_auth_error_that_does_not_show_it(registry: RunningRegistry) -> None:
    wrong = RegistryCredentials(registry.username, "not-the-password-4711")
    reading = OciRegistryClient(registry.url, wrong, retry_delays=NO_WAIT)

    with pytest.raises(RegistryAuthError, match="401") as refused:
        list(reading.repositories())

    assert "not-the-password-4711" not in str(refused.value)
    assert "not-the-password-4711" not in repr(reading)
    assert "not-the-password-4711" not in repr(wrong)
    reading.close()


def test_no_credentials_for_a_registry_that_wants_them_is_an_auth_error(registry: RunningRegistry) -> None:
    reading = OciRegistryClient(registry.url, retry_delays=NO_WAIT)
    with pytest.raises(RegistryAuthError):
        reading.resolve("ml/anything", "v1")
    reading.close()


@pytest.mark.parametrize("fault", [503, 429, None])
def test_temporary_failures_are_retried(
    registry: RunningRegistry, pusher: ImagePusher, flaky_registry: FlakyProxy, fault: int | None
) -> None:
    repository = unique_repository()
    pushed = pusher.image(repository, "v1")
    reading = OciRegistryClient(
        flaky_registry.url, RegistryCredentials(registry.username, registry.password), retry_delays=NO_WAIT
    )

    flaky_registry.fail_next(2, fault)
    assert reading.resolve(repository, "v1").digest == pushed.digest

    flaky_registry.fail_next(3, fault)
    with pytest.raises(RegistryUnavailableError, match="after 3 attempts"):
        reading.resolve(repository, "v1")
    reading.close()


def test_an_unreachable_registry_is_unavailable() -> None:
    reading = OciRegistryClient(f"http://127.0.0.1:{free_port()}", retry_delays=NO_WAIT, timeout=2)
    with pytest.raises(RegistryUnavailableError, match="ConnectError"):
        list(reading.repositories())
    reading.close()


def test_the_password_is_never_logged(
    registry: RunningRegistry, pusher: ImagePusher, secret_scan: SecretScan
) -> None:
    secret_scan.secret("registry password", registry.password)
    repository = unique_repository()
    pusher.image(repository, "v1")
    logging.getLogger("httpx").setLevel(logging.DEBUG)
    reading = OciRegistryClient(
        registry.url, RegistryCredentials(registry.username, registry.password), retry_delays=NO_WAIT
    )

    list(reading.repositories())
    list(reading.artifacts(repository))
    with pytest.raises(ReferenceGoneError) as gone:
        reading.resolve(repository, "missing")
    secret_scan.output("error", gone.value, repr(reading))
    reading.close()

    assert secret_scan.leaks() == []
