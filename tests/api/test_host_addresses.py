"""Host addresses over HTTP: an admin's override, who may set it, and the access endpoints using it."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine, text

from remotegpu.reconciler.loop import Reconciler
from remotegpu.tests.api.conftest import Caller, spec


def _hosts(admin: Caller) -> dict[str, dict[str, object]]:
    return {h["name"]: h for h in admin.get("/hosts").json()["items"]}


def test_an_admin_sets_and_clears_a_host_s_public_address(admin: Caller, reconciler: Reconciler) -> None:
    host = _hosts(admin)["node-0"]
    assert (host["address"], host["public_address"]) == ("node-0", None), "no node address: its name"

    answer = admin.put(f"/hosts/{host['id']}", json={"public_address": "gpu0.lab.example.org"})
    assert answer.status_code == 200, answer.text
    assert (answer.json()["address"], answer.json()["public_address"]) == (
        "gpu0.lab.example.org",
        "gpu0.lab.example.org",
    )
    assert _hosts(admin)["node-0"]["address"] == "gpu0.lab.example.org"
    assert admin.get(f"/hosts/{host['id']}").json()["public_address"] == "gpu0.lab.example.org"

    cleared = admin.put(f"/hosts/{host['id']}", json={"public_address": None}).json()
    assert (cleared["address"], cleared["public_address"]) == ("node-0", None)
    assert admin.put(f"/hosts/{host['id']}", json={}).json()["address"] == "node-0", (
        "nothing given: unchanged"
    )


def test_a_public_address_that_is_not_a_hostname_or_ip_is_refused_naming_the_field(
    admin: Caller, reconciler: Reconciler
) -> None:
    host = _hosts(admin)["node-0"]
    refused = admin.put(f"/hosts/{host['id']}", json={"public_address": "http://gpu0.example.org"})
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "$.public_address"
    assert "IPv4/IPv6" in refused.json()["detail"]
    unknown = admin.put(f"/hosts/{host['id']}", json={"address": "gpu0.example.org"})
    assert unknown.status_code == 422, "the observed address is the node's, not the admin's"
    assert (
        admin.put("/hosts/00000000-0000-0000-0000-000000000000", json={"public_address": "a.b"}).status_code
        == 404
    )


def test_only_platform_admins_set_a_public_address(
    admin: Caller, new_user: Callable[[str], Caller], reconciler: Reconciler, engine: Engine
) -> None:
    host = _hosts(admin)["node-0"]
    alice = new_user("alice")
    assert alice.put(f"/hosts/{host['id']}", json={"public_address": "evil.example.org"}).status_code == 403
    with engine.connect() as connection:
        assert (
            connection.execute(text("SELECT count(*) FROM hosts WHERE public_address IS NOT NULL")).scalar()
            == 0
        )


def test_the_access_endpoint_names_the_host_s_address_and_the_claimed_port(
    admin: Caller, new_user: Callable[[str], Caller], reconciler: Reconciler, engine: Engine
) -> None:
    addresses = {"node-0": "2001:db8::10", "node-1": "2001:db8::11"}
    for name, address in addresses.items():
        admin.put(f"/hosts/{_hosts(admin)[name]['id']}", json={"public_address": address})
    alice = new_user("alice")
    alice.post("/workspaces", json={"name": "research"})
    env = alice.post("/environments/apply", json=spec("train", "research", access=["ssh", "jupyter"])).json()[
        "environment"
    ]
    reconciler.run_until_idle()
    address = addresses[alice.get(f"/environments/{env['id']}").json()["host"]]
    with engine.connect() as connection:
        claimed: dict[int, int] = dict(
            connection.execute(
                text("SELECT container_port, host_port FROM port_mappings WHERE environment_id = :id"),
                {"id": env["id"]},
            ).all()
        )
    access = {a["kind"]: a for a in alice.get(f"/environments/{env['id']}/access").json()}
    assert access["ssh"]["command"] == f"ssh -p {claimed[22]} root@{address}", "ssh takes the literal bare"
    assert access["ssh"]["url"] == f"ssh://root@[{address}]:{claimed[22]}"
    assert access["jupyter"]["url"].startswith(f"http://[{address}]:{claimed[8888]}/?token="), (
        "an IPv6 literal is bracketed"
    )
    assert (access["ssh"]["host"], access["jupyter"]["port"]) == (address, claimed[8888])
