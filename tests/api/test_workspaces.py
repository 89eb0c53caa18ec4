"""Workspaces and members over HTTP: creation, roles, the last owner, deletion."""

from __future__ import annotations

from collections.abc import Callable

from remotegpu.tests.api.conftest import Caller


def test_creator_owns_the_workspace_and_sees_it_listed(new_user: Callable[[str], Caller]) -> None:
    alice = new_user("alice")
    created = alice.post("/workspaces", json={"name": "research", "display_name": "Research"})
    assert created.status_code == 201
    body = created.json()
    assert (body["name"], body["role"], body["owner_id"]) == ("research", "owner", str(alice.user_id))
    assert [w["name"] for w in alice.get("/workspaces").json()["items"]] == ["research"]
    members = alice.get(f"/workspaces/{body['id']}/members").json()
    assert [(m["username"], m["role"]) for m in members] == [("alice", "owner")]


def test_taken_or_invalid_names_are_refused_naming_the_field(new_user: Callable[[str], Caller]) -> None:
    alice, bob = new_user("alice"), new_user("bob")
    alice.post("/workspaces", json={"name": "research"})
    taken = bob.post("/workspaces", json={"name": "research"})
    assert taken.status_code == 409
    assert taken.json()["errors"][0]["field"] == "$.name"
    invalid = bob.post("/workspaces", json={"name": "Not A Label"})
    assert invalid.status_code == 422
    assert invalid.json()["errors"][0]["field"] == "$.name"
    unknown = bob.post("/workspaces", json={"name": "ok", "colour": "red"})
    assert unknown.status_code == 422
    assert "colour" in unknown.json()["detail"]


def test_members_roles_and_the_last_owner(new_user: Callable[[str], Caller]) -> None:
    alice, bob, carol = new_user("alice"), new_user("bob"), new_user("carol")
    ws = alice.post("/workspaces", json={"name": "research"}).json()["id"]
    added = alice.post(f"/workspaces/{ws}/members", json={"user": "bob@example.org", "role": "admin"})
    assert added.status_code == 201
    assert added.json()["role"] == "admin"
    assert alice.post(f"/workspaces/{ws}/members", json={"user": "bob"}).status_code == 409

    # An admin adds members, but cannot make owners.
    assert bob.post(f"/workspaces/{ws}/members", json={"user": "carol", "role": "owner"}).status_code == 403
    assert bob.post(f"/workspaces/{ws}/members", json={"user": "carol", "role": "viewer"}).status_code == 201
    # A viewer manages nobody.
    assert carol.patch(f"/workspaces/{ws}/members/{bob.user_id}", json={"role": "viewer"}).status_code == 403

    # The last owner can neither be demoted nor leave; after handing over, they can.
    demote = alice.patch(f"/workspaces/{ws}/members/{alice.user_id}", json={"role": "admin"})
    assert demote.status_code == 409
    assert alice.delete(f"/workspaces/{ws}/members/{alice.user_id}").status_code == 409
    assert alice.patch(f"/workspaces/{ws}/members/{bob.user_id}", json={"role": "owner"}).status_code == 200
    assert alice.delete(f"/workspaces/{ws}/members/{alice.user_id}").status_code == 204
    assert alice.get(f"/workspaces/{ws}").status_code == 404


def test_unknown_member_is_not_found(new_user: Callable[[str], Caller]) -> None:
    alice = new_user("alice")
    ws = alice.post("/workspaces", json={"name": "research"}).json()["id"]
    missing = alice.post(f"/workspaces/{ws}/members", json={"user": "nobody@example.org"})
    assert missing.status_code == 404


def test_only_owners_delete_and_a_deleted_workspace_is_gone(new_user: Callable[[str], Caller]) -> None:
    alice, bob = new_user("alice"), new_user("bob")
    ws = alice.post("/workspaces", json={"name": "research"}).json()["id"]
    alice.post(f"/workspaces/{ws}/members", json={"user": "bob", "role": "admin"})
    assert bob.put(f"/workspaces/{ws}", json={"display_name": "R&D"}).json()["display_name"] == "R&D"
    assert bob.delete(f"/workspaces/{ws}").status_code == 403
    assert alice.delete(f"/workspaces/{ws}").status_code == 202
    assert alice.get(f"/workspaces/{ws}").status_code == 404
    assert alice.get("/workspaces").json()["items"] == []
    # The name is free again.
    assert alice.post("/workspaces", json={"name": "research"}).status_code == 201


def test_members_never_see_each_others_email(new_user: Callable[[str], Caller]) -> None:
    alice, bob = new_user("alice"), new_user("bob")
    ws = alice.post("/workspaces", json={"name": "research"}).json()["id"]
    added = alice.post(f"/workspaces/{ws}/members", json={"user": "bob", "role": "viewer"})
    assert added.status_code == 201
    assert set(added.json()) == {"user_id", "username", "role", "added_at"}
    listed = bob.get(f"/workspaces/{ws}/members")
    assert [(m["username"], m["role"]) for m in listed.json()] == [("alice", "owner"), ("bob", "viewer")]
    assert "@" not in added.text + listed.text
    # Each user still sees their own address.
    assert bob.get("/users/me").json()["email"] == bob.email
