"""Nothing of one workspace leaks to a user of another: lists, searches, filters, ids, error messages."""

from __future__ import annotations

from collections.abc import Callable

from remotegpu.tests.api.conftest import Caller, spec


def test_nothing_of_another_workspace_is_visible(new_user: Callable[[str], Caller]) -> None:
    alice, mallory = new_user("alice"), new_user("mallory")
    research = alice.post("/workspaces", json={"name": "research"}).json()["id"]
    mallory.post("/workspaces", json={"name": "mallory"})
    env = alice.post("/environments", json=spec("secret-project", "research")).json()["environment"]["id"]
    image = alice.post(
        "/images",
        json={
            "name": "secret-image",
            "reference": "registry.example.org/r/secret:1",
            "workspace": "research",
        },
    ).json()["id"]

    # Lists and searches show only mallory's own things.
    assert [w["name"] for w in mallory.get("/workspaces").json()["items"]] == ["mallory"]
    assert mallory.get("/environments").json()["items"] == []
    assert mallory.get("/images").json()["items"] == []
    assert mallory.get("/images/search", params={"q": "secret"}).json()["items"] == []
    assert mallory.get("/billing/invoices").json()["items"] == []

    # Ids and names of alice's things read as "does not exist", and the answer does not echo them back
    # any differently from an id that really does not exist.
    for path in (
        f"/workspaces/{research}",
        f"/workspaces/{research}/members",
        f"/environments/{env}",
        f"/environments/{env}/events",
        f"/environments/{env}/logs",
        f"/images/{image}",
        f"/quotas/workspaces/{research}",
        f"/quotas/{alice.user_id}",
    ):
        response = mallory.get(path)
        assert response.status_code == 404, path
        assert "secret" not in response.text
    assert mallory.get("/environments", params={"workspace": "research"}).status_code == 404
    assert mallory.post("/environments/apply", json=spec("x", "research")).status_code == 404
    assert mallory.post(f"/environments/{env}/stop").status_code == 404
    assert mallory.post(f"/workspaces/{research}/members", json={"user": "mallory"}).status_code == 404

    # Alice's environment is untouched.
    assert alice.get(f"/environments/{env}").json()["desired_state"] == "running"


def test_a_removed_member_loses_access_at_once(new_user: Callable[[str], Caller]) -> None:
    alice, bob = new_user("alice"), new_user("bob")
    research = alice.post("/workspaces", json={"name": "research"}).json()["id"]
    alice.post(f"/workspaces/{research}/members", json={"user": "bob", "role": "member"})
    env = bob.post("/environments", json=spec("bobs", "research")).json()["environment"]["id"]
    assert bob.get(f"/environments/{env}").status_code == 200
    alice.delete(f"/workspaces/{research}/members/{bob.user_id}")
    assert bob.get(f"/environments/{env}").status_code == 404
    assert bob.get("/environments").json()["items"] == []
