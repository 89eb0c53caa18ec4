"""The image catalog and billing reads over HTTP."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal

from sqlalchemy import Engine, text

from remotegpu.tests.api.conftest import Caller, spec


def test_catalog_add_search_get_delete(admin: Caller, new_user: Callable[[str], Caller]) -> None:
    alice = new_user("alice")
    alice.post("/workspaces", json={"name": "research"})
    public = admin.post(
        "/images",
        json={
            "name": "pytorch",
            "reference": "nvcr.io/nvidia/pytorch:24.05-py3",
            "visibility": "public",
            "framework": "pytorch",
            "cuda_version": "12.4",
        },
    )
    assert public.status_code == 201, public.text
    assert public.json()["reference"] == "nvcr.io/nvidia/pytorch:24.05-py3"
    assert (
        alice.post(
            "/images", json={"name": "x", "reference": "nvcr.io/x:1", "visibility": "public"}
        ).status_code
        == 403
    )
    private = alice.post(
        "/images",
        json={"name": "ours", "reference": "registry.example.org/r/ours:2", "workspace": "research"},
    )
    assert private.status_code == 201
    duplicate = alice.post(
        "/images",
        json={"name": "again", "reference": "registry.example.org/r/ours:2", "workspace": "research"},
    )
    assert duplicate.status_code == 409
    bad = alice.post("/images", json={"name": "bad", "reference": "has space:1", "workspace": "research"})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "$.reference"

    assert [i["name"] for i in alice.get("/images").json()["items"]] == ["ours", "pytorch"]
    assert [i["name"] for i in alice.get("/images/search", params={"q": "PYTOR"}).json()["items"]] == [
        "pytorch"
    ]
    assert alice.get(f"/images/{public.json()['id']}").json()["cuda_version"] == "12.4"

    # A catalog name in a spec resolves to the full reference.
    env = alice.post("/environments", json=spec("train", "research", image="pytorch")).json()["environment"]
    assert env["spec"]["image"] == "nvcr.io/nvidia/pytorch:24.05-py3"

    assert alice.delete(f"/images/{public.json()['id']}").status_code == 403
    assert alice.delete(f"/images/{private.json()['id']}").status_code == 204
    assert admin.delete(f"/images/{public.json()['id']}").status_code == 204
    assert alice.get("/images").json()["items"] == []


def test_billing_is_for_workspace_admins_and_paginated(
    engine: Engine, new_user: Callable[[str], Caller]
) -> None:
    alice, bob = new_user("alice"), new_user("bob")
    research = alice.post("/workspaces", json={"name": "research"}).json()["id"]
    alice.post(f"/workspaces/{research}/members", json={"user": "bob", "role": "member"})
    env = alice.post("/environments", json=spec("train", "research")).json()["environment"]["id"]
    start = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    with engine.begin() as connection:
        meter = connection.execute(
            text(
                "INSERT INTO meters (environment_id, workspace_id, user_id, resource, gpu_model, quantity,"
                " started_at, ended_at, metered_until) VALUES (:e, :w, :u, 'gpu', 'H100', 1, :s, :t, :t)"
                " RETURNING id"
            ),
            {"e": env, "w": research, "u": alice.user_id, "s": start, "t": start + dt.timedelta(hours=3)},
        ).scalar_one()
        for hour in range(3):
            connection.execute(
                text(
                    "INSERT INTO billing_intervals (meter_id, environment_id, workspace_id, user_id, resource,"
                    " gpu_model, quantity, unit, started_at, ended_at, currency, unit_price, amount)"
                    " VALUES (:m, :e, :w, :u, 'gpu', 'H100', 1, 'gpu_hour', :s, :t, 'EUR', 2.5, 2.5)"
                ),
                {
                    "m": meter,
                    "e": env,
                    "w": research,
                    "u": alice.user_id,
                    "s": start + dt.timedelta(hours=hour),
                    "t": start + dt.timedelta(hours=hour + 1),
                },
            )
        invoice = connection.execute(
            text(
                "INSERT INTO invoices (workspace_id, period_start, period_end, currency, total)"
                " VALUES (:w, :s, :e, 'EUR', 7.5) RETURNING id"
            ),
            {"w": research, "s": start, "e": start + dt.timedelta(days=30)},
        ).scalar_one()
        connection.execute(
            text(
                "INSERT INTO invoice_lines (invoice_id, description, resource, gpu_model, quantity, unit,"
                " unit_price, amount) VALUES (:i, 'H100 GPU-hours', 'gpu', 'H100', 3, 'gpu_hour', 2.5, 7.5)"
            ),
            {"i": invoice},
        )
        connection.execute(
            text("UPDATE invoices SET status = 'finalized', finalized_at = now() WHERE id = :i"),
            {"i": invoice},
        )
    first = alice.get("/billing/records", params={"limit": 2}).json()
    assert len(first["items"]) == 2
    rest = alice.get("/billing/records", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert (len(rest["items"]), rest["next_cursor"]) == (1, None)
    assert Decimal(first["items"][0]["amount"]) == Decimal("2.5")
    shown = alice.get(f"/billing/invoices/{invoice}").json()
    assert (Decimal(shown["total"]), shown["lines"][0]["gpu_model"]) == (Decimal("7.5"), "H100")
    # A member sees no bills; asking for one by id is refused, by workspace filter too.
    assert bob.get("/billing/records").json()["items"] == []
    assert bob.get(f"/billing/invoices/{invoice}").status_code == 403
    assert bob.get("/billing/invoices", params={"workspace": "research"}).status_code == 403


def test_a_bare_unknown_image_name_says_how_to_write_a_reference(new_user: Callable[[str], Caller]) -> None:
    alice = new_user("alice")
    alice.post("/workspaces", json={"name": "research"})
    refused = alice.post("/environments", json=spec("train", "research", image="ubuntu"))
    assert refused.status_code == 404
    assert "docker.io/library/ubuntu:24.04" in refused.json()["detail"]
    accepted = alice.post("/environments", json=spec("train", "research", image="ubuntu:24.04"))
    assert accepted.json()["environment"]["spec"]["image"] == "ubuntu:24.04"


def test_two_workspaces_may_each_hold_the_same_private_reference(
    admin: Caller, new_user: Callable[[str], Caller]
) -> None:
    alice, bob = new_user("alice"), new_user("bob")
    alice.post("/workspaces", json={"name": "research"})
    bob.post("/workspaces", json={"name": "lab"})
    reference = "registry.example.org/team/model:1"
    ours = alice.post("/images", json={"name": "model", "reference": reference, "workspace": "research"})
    theirs = bob.post("/images", json={"name": "model", "reference": reference, "workspace": "lab"})
    assert (ours.status_code, theirs.status_code) == (201, 201), theirs.text
    assert [i["id"] for i in alice.get("/images").json()["items"]] == [ours.json()["id"]]
    assert [i["id"] for i in bob.get("/images").json()["items"]] == [theirs.json()["id"]]
    # Within one namespace a reference is still unique: the workspace's own, and the public catalog.
    again = bob.post("/images", json={"name": "again", "reference": reference, "workspace": "lab"})
    assert again.status_code == 409
    assert again.json()["errors"][0]["field"] == "$.reference"
    public = {"name": "model", "reference": reference, "visibility": "public"}
    assert admin.post("/images", json=public).status_code == 201
    assert admin.post("/images", json=public).status_code == 409


def test_another_workspaces_private_image_reads_exactly_as_an_unknown_one(
    new_user: Callable[[str], Caller],
) -> None:
    alice, bob = new_user("alice"), new_user("bob")
    alice.post("/workspaces", json={"name": "research"})
    bob.post("/workspaces", json={"name": "lab"})
    private = {"name": "secret-model", "reference": "registry.example.org/team/secret:1"}
    assert alice.post("/images", json={**private, "workspace": "research"}).status_code == 201

    def create(name: str, image: str) -> tuple[int, str]:
        answer = bob.post("/environments", json=spec(name, "lab", image=image))
        body = answer.json()
        shown = body["environment"]["spec"]["image"] if answer.status_code == 201 else body["detail"]
        return answer.status_code, shown.replace(image, "IMAGE")

    # A full reference: used as written, as any reference the catalog does not hold.
    known = create("a", private["reference"])
    assert known == create("b", "registry.example.org/team/unknown:1") == (201, "IMAGE")
    # A catalog name: not found, in the words used for a name that exists nowhere.
    assert create("c", private["name"]) == create("d", "no-such-model")
    assert create("c", private["name"])[0] == 404
