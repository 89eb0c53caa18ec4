"""The Harbor API v2.0 client against the contract fake (`ops/fakes/harbor.py`): projects, repositories
and artifacts page by page, nested names encoded twice, sizes of images and indexes, tags resolved,
refused and temporary answers, robot accounts, and no password or robot secret let out."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator

import httpx
import pytest

from remotegpu.core.registry import manifests
from remotegpu.core.registry.auth import RegistryCredentials
from remotegpu.core.registry.client import (
    ReferenceGoneError,
    RegistryAuthError,
    RegistryUnavailableError,
    Repository,
)
from remotegpu.core.registry.harbor import HarborClient, HarborProject
from remotegpu.ops.fakes.harbor import FakeHarbor, seed_demo
from remotegpu.tests.secret_scan import SecretScan, secret_scan

__all__ = ["secret_scan"]

NO_WAIT = (0.0, 0.0)


@pytest.fixture
def harbor() -> Iterator[FakeHarbor]:
    with FakeHarbor() as fake:
        yield fake
        assert fake.unexpected == [], "the client made calls the fake Harbor does not implement"


@pytest.fixture
def client(harbor: FakeHarbor) -> Iterator[HarborClient]:
    admin = RegistryCredentials("admin", harbor.admin_password)
    reading = HarborClient(harbor.url, admin, retry_delays=NO_WAIT, page_size=2)
    yield reading
    reading.close()


def test_repositories_of_every_project_are_listed_across_pages(
    harbor: FakeHarbor, client: HarborClient
) -> None:
    harbor.add_project("library", public=True)
    for name in ("ml/a", "ml/b", "ml/c", "ml/vision/resnet", "library/cuda", "team/x"):
        harbor.push(name, ["v1"])
    harbor.add_project("empty")

    projects = {p.name: p for p in client.projects()}
    repositories = list(client.repositories())

    assert set(projects) == {"library", "ml", "team", "empty"}
    assert projects["library"] == HarborProject("library", projects["library"].project_id, public=True)
    assert projects["ml"].public is False
    assert sorted(repositories, key=lambda r: r.name) == [
        Repository("library/cuda", "library"),
        Repository("ml/a", "ml"),
        Repository("ml/b", "ml"),
        Repository("ml/c", "ml"),
        Repository("ml/vision/resnet", "ml"),
        Repository("team/x", "team"),
    ]
    assert any("page=2" in r for r in harbor.requests), "pages were not followed"


def test_artifacts_carry_tags_labels_size_and_push_time(harbor: FakeHarbor, client: HarborClient) -> None:
    pushed_at = dt.datetime(2026, 5, 1, 12, 30, 15, 123000, tzinfo=dt.UTC)
    old = harbor.push("ml/pytorch", ["23.10"], size=7_000, pushed_at=pushed_at - dt.timedelta(days=30))
    new = harbor.push(
        "ml/pytorch", ["24.05", "latest"], size=9_000, labels=["gpu", "approved"], pushed_at=pushed_at
    )
    untagged = harbor.push("ml/pytorch", ["moving"], size=1)
    harbor.push("ml/pytorch", ["moving"], size=2)  # takes the tag: the first is left untagged

    artifacts = {a.digest: a for a in client.artifacts("ml/pytorch")}

    assert untagged.digest not in artifacts
    assert artifacts[new.digest].tags == ("24.05", "latest")
    assert artifacts[new.digest].labels == ("approved", "gpu")
    assert artifacts[new.digest].size_bytes == 9_000
    assert artifacts[new.digest].pushed_at == pushed_at
    assert artifacts[old.digest].tags == ("23.10",)
    assert artifacts[old.digest].labels == ()
    assert len(artifacts) == 3


def test_a_nested_repository_is_reached_with_its_name_encoded_twice(
    harbor: FakeHarbor, client: HarborClient
) -> None:
    pushed = harbor.push("ml/vision/resnet", ["v1"], size=4_000)

    assert client.resolve("ml/vision/resnet", "v1").digest == pushed.digest
    assert [a.digest for a in client.artifacts("ml/vision/resnet")] == [pushed.digest]
    # The fake routes as Harbor does: encoded once, the name splits into path segments.
    admin = ("admin", harbor.admin_password)
    once = httpx.get(f"{harbor.url}/api/v2.0/projects/ml/repositories/vision%2Fresnet/artifacts", auth=admin)
    assert once.status_code == 404
    harbor.unexpected.clear()


def test_an_index_is_sized_by_its_largest_platform(harbor: FakeHarbor, client: HarborClient) -> None:
    index = harbor.push(
        "ml/multi", ["v1"], platforms=[(("linux", "amd64"), 5_000), (("linux", "arm64"), 8_000)]
    )

    resolved = client.resolve("ml/multi", "v1")
    (artifact,) = client.artifacts("ml/multi")

    assert resolved.digest == index.digest
    assert resolved.media_type == manifests.OCI_INDEX
    assert resolved.size_bytes == 8_000
    assert artifact.size_bytes == 8_000
    assert index.size > 8_000, "Harbor's own size of an index sums its platforms"


def test_a_tag_resolves_to_the_artifact_it_names_now(harbor: FakeHarbor, client: HarborClient) -> None:
    first = harbor.push("ml/app", ["latest"], size=3_000)
    assert client.resolve("ml/app", "latest").digest == first.digest

    second = harbor.push("ml/app", ["latest"], size=3_500)
    resolved = client.resolve("ml/app", "latest")

    assert (resolved.digest, resolved.size_bytes, resolved.media_type) == (
        second.digest,
        3_500,
        manifests.OCI_MANIFEST,
    )


def test_what_does_not_exist_is_gone(harbor: FakeHarbor, client: HarborClient) -> None:
    kept = harbor.push("ml/app", ["v1"])
    removed = harbor.push("ml/app", ["v2"])
    harbor.delete_artifact("ml/app", removed.digest)

    with pytest.raises(ReferenceGoneError, match=r"answered 404 \(NOT_FOUND: artifact ml/app:v2 not found\)"):
        client.resolve("ml/app", "v2")
    assert [a.digest for a in client.artifacts("ml/app")] == [kept.digest]
    with pytest.raises(ReferenceGoneError, match="repository ml/gone not found"):
        list(client.artifacts("ml/gone"))
    with pytest.raises(ReferenceGoneError, match="project nope not found"):
        client.resolve("nope/app", "v1")
    with pytest.raises(ReferenceGoneError, match="project/repository"):
        client.resolve("alpine", "v1")


def test_refused_credentials_are_auth_errors(harbor: FakeHarbor) -> None:
    harbor.add_project("library", public=True)
    harbor.push("library/cuda", ["v1"])
    harbor.push("private/app", ["v1"])
    outsider_password = harbor.add_user("outsider", projects=["library"])

    wrong = HarborClient(
        harbor.url, RegistryCredentials("admin", "not-the-password-4711"), retry_delays=NO_WAIT
    )
    with pytest.raises(RegistryAuthError, match="401") as refused:
        list(wrong.repositories())
    assert "not-the-password-4711" not in str(refused.value)

    outsider = HarborClient(
        harbor.url, RegistryCredentials("outsider", outsider_password), retry_delays=NO_WAIT
    )
    assert [r.name for r in outsider.repositories()] == ["library/cuda"]
    with pytest.raises(RegistryAuthError, match=r"403 \(FORBIDDEN"):
        outsider.resolve("private/app", "v1")

    anonymous = HarborClient(harbor.url, retry_delays=NO_WAIT)
    assert [r.name for r in anonymous.repositories()] == ["library/cuda"]
    with pytest.raises(RegistryAuthError, match="401"):
        anonymous.resolve("private/app", "v1")
    for reading in (wrong, outsider, anonymous):
        reading.close()


@pytest.mark.parametrize("fault", [503, 429, None])
def test_temporary_failures_are_retried(harbor: FakeHarbor, client: HarborClient, fault: int | None) -> None:
    pushed = harbor.push("ml/app", ["v1"])

    harbor.fail_next(2, fault)
    assert client.resolve("ml/app", "v1").digest == pushed.digest

    harbor.fail_next(3, fault)
    with pytest.raises(RegistryUnavailableError, match="after 3 attempts"):
        client.resolve("ml/app", "v1")


def test_a_robot_account_is_made_to_pull_from_one_project(harbor: FakeHarbor, client: HarborClient) -> None:
    harbor.push("ml/app", ["v1"])

    robot = client.create_robot("ml", "remotegpu-pull")

    assert robot.username == "robot$ml+remotegpu-pull"
    made = harbor.robot(robot.username)
    assert made is not None
    assert made.secret == robot.password
    assert made.may_pull(harbor.catalog.projects["ml"].project_id)
    assert made.duration == -1
    assert made.permissions == [
        {"kind": "project", "namespace": "ml", "access": [{"resource": "repository", "action": "pull"}]}
    ]
    assert robot.password not in repr(robot)


def test_making_a_robot_again_gives_it_a_new_secret(harbor: FakeHarbor, client: HarborClient) -> None:
    harbor.add_project("ml")
    first = client.create_robot("ml", "remotegpu-pull")

    second = client.create_robot("ml", "remotegpu-pull")

    assert second.username == first.username
    assert second.password != first.password
    made = harbor.robot(first.username)
    assert made is not None
    assert made.secret == second.password
    assert len(harbor.robots.robots) == 1


def test_a_robot_for_a_missing_project_or_with_a_bad_name_is_refused(
    harbor: FakeHarbor, client: HarborClient
) -> None:
    with pytest.raises(ReferenceGoneError, match="project nope not found"):
        client.create_robot("nope", "pull")
    with pytest.raises(ValueError, match="lower-case"):
        client.create_robot("ml", "Pull Robot")
    with pytest.raises(ValueError, match="duration_days"):
        client.create_robot("ml", "pull", duration_days=0)


def test_the_fake_pages_as_harbor_does(harbor: FakeHarbor) -> None:
    for number in range(5):
        harbor.add_project(f"p{number}", public=True)

    middle = httpx.get(f"{harbor.url}/api/v2.0/projects?page=2&page_size=2")
    too_big = httpx.get(f"{harbor.url}/api/v2.0/projects?page_size=101")

    assert middle.headers["X-Total-Count"] == "5"
    assert middle.headers["Link"] == (
        '</api/v2.0/projects?page=1&page_size=2>; rel="prev" , </api/v2.0/projects?page=3&page_size=2>; rel="next"'
    )
    assert [p["name"] for p in middle.json()] == ["p2", "p3"]
    assert too_big.status_code == 422
    assert too_big.json()["errors"][0]["code"] == "UNPROCESSABLE_ENTITY"


def test_the_demo_seed_is_readable(harbor: FakeHarbor, client: HarborClient) -> None:
    seed_demo(harbor)

    names = {r.name for r in client.repositories()}
    pytorch = {a.tags: a for a in client.artifacts("library/pytorch")}

    assert names == {"library/pytorch", "library/cuda", "research/llm/finetune"}
    assert pytorch[("24.05-cuda12", "latest")].size_bytes == 8_400_000_000


def test_no_password_or_robot_secret_is_logged(
    harbor: FakeHarbor, client: HarborClient, secret_scan: SecretScan
) -> None:
    logging.getLogger("httpx").setLevel(logging.DEBUG)
    secret_scan.secret("harbor admin password", harbor.admin_password)
    harbor.push("ml/app", ["v1"], platforms=[(("linux", "amd64"), 10), (("linux", "arm64"), 20)])

    list(client.repositories())
    list(client.artifacts("ml/app"))
    robot = client.create_robot("ml", "pull")
    again = client.create_robot("ml", "pull")
    harbor.fail_next(3)
    with pytest.raises(RegistryUnavailableError) as down:
        client.resolve("ml/app", "v1")
    secret_scan.output("error and reprs", down.value, repr(client), repr(robot), repr(again))

    secret_scan.secret("first robot secret", robot.password)
    secret_scan.secret("second robot secret", again.password)
    assert secret_scan.leaks() == []
