"""The fake Guacamole's user groups answer as guacamole-client 1.5's REST API and JDBC extension do: the
`/userGroups` directory, the `memberUsers` / `memberUserGroups` / `userGroups` related-object sets (GET a
list, PATCH `add` / `remove` on "/"), group permissions, and the READ a member gains through an enabled
group (`readers_of`, a user's `effectivePermissions`, what the user may list)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from remotegpu.ops.fakes.guacamole import FakeGuacamole

DS = "/api/session/data/postgresql"


@pytest.fixture
def guac() -> Iterator[FakeGuacamole]:
    with FakeGuacamole() as fake:
        yield fake
        assert fake.unexpected == [], "the test made calls the fake Guacamole does not implement"


def client(fake: FakeGuacamole, username: str = "guacadmin", password: str = "guacadmin") -> httpx.Client:
    answer = httpx.post(f"{fake.url}/api/tokens", data={"username": username, "password": password})
    return httpx.Client(base_url=fake.url, headers={"Guacamole-Token": answer.json()["authToken"]})


@pytest.fixture
def admin(guac: FakeGuacamole) -> Iterator[httpx.Client]:
    with client(guac) as admin:
        yield admin


def assert_api_error(answer: httpx.Response, status: int, kind: str, message: str) -> None:
    assert answer.status_code == status
    assert answer.json()["type"] == kind
    assert answer.json()["message"] == message


def members(*ops: tuple[str, Any]) -> list[dict[str, Any]]:
    return [{"op": op, "path": "/", "value": value} for op, value in ops]


def test_groups_are_created_listed_read_and_deleted(admin: httpx.Client, guac: FakeGuacamole) -> None:
    created = admin.post(f"{DS}/userGroups", json={"identifier": "lab", "attributes": {"x": "1"}})
    assert created.status_code == 200
    assert created.json() == {"identifier": "lab", "attributes": {}}, "attributes outside the schema dropped"
    assert admin.get(f"{DS}/userGroups").json() == {
        "lab": {"identifier": "lab", "attributes": {"disabled": None}}
    }
    assert admin.get(f"{DS}/userGroups/lab").json() == {"identifier": "lab", "attributes": {"disabled": None}}
    assert admin.get(f"{DS}/userGroups/lab/memberUsers").json() == []
    permissions = admin.get(f"{DS}/userGroups/lab/permissions").json()
    assert permissions["connectionPermissions"] == {}
    assert permissions["userPermissions"] == {}

    assert admin.delete(f"{DS}/userGroups/lab").status_code == 204
    for answer in (
        admin.get(f"{DS}/userGroups/lab"),
        admin.delete(f"{DS}/userGroups/lab"),
        admin.get(f"{DS}/userGroups/lab/memberUsers"),
        admin.patch(f"{DS}/userGroups/lab/memberUsers", json=members(("add", "guacadmin"))),
        admin.patch(f"{DS}/userGroups/lab/permissions", json=[]),
    ):
        assert_api_error(answer, 404, "NOT_FOUND", 'Not found: "lab"')
    assert guac.user_groups == {}


def test_groups_the_product_refuses(admin: httpx.Client, guac: FakeGuacamole) -> None:
    assert admin.post(f"{DS}/userGroups", json={"identifier": "lab", "attributes": {}}).status_code == 200
    duplicate = admin.post(f"{DS}/userGroups", json={"identifier": "lab", "attributes": {}})
    assert_api_error(duplicate, 400, "BAD_REQUEST", 'Group "lab" already exists.')
    blank = admin.post(f"{DS}/userGroups", json={"identifier": " ", "attributes": {}})
    assert_api_error(blank, 400, "BAD_REQUEST", "The group name must not be blank.")
    no_attributes = admin.post(f"{DS}/userGroups", json={"identifier": "other"})
    assert_api_error(no_attributes, 500, "INTERNAL_ERROR", "Unexpected internal error")
    assert admin.post(f"{DS}/userGroups", data={"identifier": "other"}).status_code == 415

    guac.add_user("bob", "bobs-password")
    with client(guac, "bob", "bobs-password") as bob:
        assert bob.get(f"{DS}/userGroups").json() == {}
        assert_api_error(bob.get(f"{DS}/userGroups/lab"), 404, "NOT_FOUND", 'Not found: "lab"')
        made = bob.post(f"{DS}/userGroups", json={"identifier": "bobs", "attributes": {}})
        assert_api_error(made, 403, "PERMISSION_DENIED", "Permission denied.")
        joined = bob.patch(f"{DS}/users/bob/userGroups", json=members(("add", "lab")))
        assert_api_error(joined, 403, "PERMISSION_DENIED", "Permission denied.")
    assert sorted(guac.user_groups) == ["lab"]


def test_member_users_are_patched_as_a_related_object_set(admin: httpx.Client, guac: FakeGuacamole) -> None:
    admin.post(f"{DS}/userGroups", json={"identifier": "lab", "attributes": {}})
    for name in ("alice", "bob", "carol"):
        guac.add_user(name)
    path = f"{DS}/userGroups/lab/memberUsers"
    added = admin.patch(
        path, json=members(("add", "alice"), ("add", "bob"), ("add", "nobody"), ("add", None))
    )
    assert added.status_code == 204
    assert admin.get(path).json() == ["alice", "bob"], (
        "an unknown name is skipped, as the insert selects by name"
    )
    assert admin.patch(path, json=members(("add", "alice"))).status_code == 204, (
        "adding a member again is fine"
    )
    assert admin.get(f"{DS}/users/alice/userGroups").json() == ["lab"]

    swapped = admin.patch(path, json=members(("remove", "bob"), ("add", "carol"), ("remove", "nobody")))
    assert swapped.status_code == 204
    assert admin.get(path).json() == ["alice", "carol"]
    both = admin.patch(path, json=members(("add", "bob"), ("remove", "bob")))
    assert both.status_code == 204
    assert admin.get(path).json() == ["alice", "carol"], "all additions, then all removals"

    assert admin.patch(f"{DS}/users/bob/userGroups", json=members(("add", "lab"))).status_code == 204
    assert guac.user_groups["lab"].member_users == {"alice", "bob", "carol"}, (
        "the same relation from the user"
    )

    wrong_path = [{"op": "add", "path": "/alice", "value": "alice"}, *members(("remove", "alice"))]
    assert_api_error(
        admin.patch(path, json=wrong_path), 400, "BAD_REQUEST", 'Unsupported patch path: "/alice"'
    )
    replace = members(("remove", "alice"), ("replace", "alice"))
    assert_api_error(
        admin.patch(path, json=replace), 400, "BAD_REQUEST", 'Unsupported patch operation: "replace"'
    )
    assert admin.get(path).json() == ["alice", "bob", "carol"], "a refused patch changes nothing"


def test_members_read_what_their_enabled_groups_may_read(admin: httpx.Client, guac: FakeGuacamole) -> None:
    ssh = {"parentIdentifier": "ROOT", "protocol": "ssh", "parameters": {}, "attributes": {}}
    shared = admin.post(f"{DS}/connections", json={"name": "shared", **ssh}).json()["identifier"]
    admin.post(f"{DS}/connections", json={"name": "other", **ssh})
    guac.add_user("bob", "bobs-password")
    guac.add_user("carol")
    admin.post(f"{DS}/userGroups", json={"identifier": "lab", "attributes": {}})
    admin.post(f"{DS}/userGroups", json={"identifier": "team", "attributes": {}})
    grant = [{"op": "add", "path": f"/connectionPermissions/{shared}", "value": "READ"}]
    assert admin.patch(f"{DS}/userGroups/lab/permissions", json=grant).status_code == 204
    assert admin.get(f"{DS}/userGroups/lab/permissions").json()["connectionPermissions"] == {shared: ["READ"]}
    admin.patch(f"{DS}/userGroups/lab/memberUsers", json=members(("add", "bob")))
    admin.patch(f"{DS}/userGroups/lab/memberUserGroups", json=members(("add", "team")))
    admin.patch(f"{DS}/userGroups/team/memberUsers", json=members(("add", "carol")))
    assert admin.get(f"{DS}/userGroups/team/userGroups").json() == ["lab"]

    assert guac.readers_of(shared) == {"bob", "carol"}
    assert guac.permissions_of("bob") == {}, "nothing granted to bob himself"
    effective = admin.get(f"{DS}/users/bob/effectivePermissions").json()
    assert effective["connectionPermissions"] == {shared: ["READ"]}
    with client(guac, "bob", "bobs-password") as bob:
        assert list(bob.get(f"{DS}/connections").json()) == [shared]

    guac.user_groups["lab"].attributes["disabled"] = "true"
    assert admin.get(f"{DS}/userGroups/lab").json()["attributes"] == {"disabled": "true"}
    assert guac.readers_of(shared) == set(), "a disabled group grants nothing"
    guac.user_groups["lab"].attributes["disabled"] = None

    admin.patch(f"{DS}/userGroups/lab/memberUsers", json=members(("remove", "bob")))
    assert guac.readers_of(shared) == {"carol"}
    admin.delete(f"{DS}/userGroups/team")
    assert guac.user_groups["lab"].member_groups == set(), "memberships go with the group"
    assert guac.readers_of(shared) == set()

    admin.patch(f"{DS}/userGroups/lab/memberUsers", json=members(("add", "bob")))
    assert admin.delete(f"{DS}/connections/{shared}").status_code == 204
    assert guac.user_groups["lab"].connection_permissions == {}, "a connection's permissions go with it"


def test_the_page_shows_who_may_open_a_connection_through_a_group(
    admin: httpx.Client, guac: FakeGuacamole
) -> None:
    ssh = {"parentIdentifier": "ROOT", "protocol": "ssh", "parameters": {}, "attributes": {}}
    shared = admin.post(f"{DS}/connections", json={"name": "shared", **ssh}).json()["identifier"]
    guac.add_user_group("lab", "bob")
    guac.add_user("bob")
    grant = [{"op": "add", "path": f"/connectionPermissions/{shared}", "value": "READ"}]
    admin.patch(f"{DS}/userGroups/lab/permissions", json=grant)
    assert "<td>bob</td>" in httpx.get(f"{guac.url}/").text
