"""Platform administration over HTTP: hosts, GPUs, quotas, reconciler status."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine

from remotegpu.core.accounts.users import register_user
from remotegpu.core.environments.states import UserRole
from remotegpu.reconciler.loop import Reconciler
from remotegpu.tests.api.conftest import Caller, spec


def test_hosts_and_gpus_are_listed_with_capacity(admin: Caller, reconciler: Reconciler) -> None:
    hosts = admin.get("/hosts").json()["items"]
    assert [(h["name"], h["gpus_total"], h["gpus_free"], h["health"]) for h in hosts] == [
        ("node-0", 8, 8, "ready"),
        ("node-1", 8, 8, "ready"),
    ]
    gpus = admin.get(f"/hosts/{hosts[0]['id']}/gpus").json()
    assert [g["index"] for g in gpus] == list(range(8))
    assert len(admin.get("/gpus").json()) == 16


def test_cordon_keeps_new_work_off_and_drain_stops_what_runs(
    admin: Caller, reconciler: Reconciler, new_user: Callable[[str], Caller]
) -> None:
    alice = new_user("alice")
    alice.post("/workspaces", json={"name": "research"})
    hosts = {h["name"]: h["id"] for h in admin.get("/hosts").json()["items"]}
    cordoned = admin.post(f"/hosts/{hosts['node-0']}/cordon", json={"reason": "fan replacement"}).json()
    assert (cordoned["cordoned"], cordoned["cordon_reason"]) == (True, "fan replacement")
    env = alice.post("/environments", json=spec("train", "research")).json()["environment"]["id"]
    reconciler.run_until_idle()
    assert alice.get(f"/environments/{env}").json()["host"] == "node-1"

    drained = admin.post(f"/hosts/{hosts['node-1']}/drain", json={"reason": "kernel update"}).json()
    assert drained["stopping"] == [env]
    reconciler.run_until_idle()
    assert alice.get(f"/environments/{env}").json()["phase"] == "stopped"
    assert admin.post(f"/hosts/{hosts['node-1']}/uncordon").json()["draining"] is False


def test_unhealthy_gpu_is_reported_and_not_free(admin: Caller, reconciler: Reconciler) -> None:
    gpu = admin.get("/gpus").json()[0]
    marked = admin.post(f"/gpus/{gpu['id']}/health", json={"health": "unhealthy", "reason": "XID 79"})
    assert (marked.json()["health"], marked.json()["health_reason"]) == ("unhealthy", "XID 79")
    host = admin.get(f"/hosts/{gpu['host_id']}").json()
    assert host["gpus_free"] == 7
    bad = admin.post(f"/gpus/{gpu['id']}/health", json={"health": "sick"})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "$.health"


def test_quota_set_read_and_enforced_with_usage(
    admin: Caller, reconciler: Reconciler, new_user: Callable[[str], Caller]
) -> None:
    alice = new_user("alice")
    research = alice.post("/workspaces", json={"name": "research"}).json()["id"]
    assert alice.put(f"/quotas/workspaces/{research}", json={"gpus": 1}).status_code == 403
    limits = admin.put(
        f"/quotas/workspaces/{research}", json={"gpus": 1, "gpus_by_model": {"H100": 1}, "memory": "64Gi"}
    ).json()
    assert (limits["max_gpus"], limits["max_gpus_by_model"], limits["max_memory_bytes"]) == (
        1,
        {"H100": 1},
        64 << 30,
    )
    assert alice.get(f"/quotas/workspaces/{research}").json()["max_gpus"] == 1
    bad = admin.put(f"/quotas/workspaces/{research}", json={"memory": "plenty"})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "$.memory"

    first = alice.post("/environments", json=spec("one", "research")).json()["environment"]["id"]
    second = alice.post("/environments", json=spec("two", "research")).json()["environment"]["id"]
    reconciler.run_until_idle()
    assert alice.get(f"/environments/{first}").json()["phase"] == "running"
    over = alice.get(f"/environments/{second}").json()
    assert over["phase"] != "running"
    usage = alice.get(f"/quotas/workspaces/{research}/usage").json()
    assert (usage["gpus"], usage["gpus_by_model"], usage["running_environments"]) == (1, {"H100": 1}, 1)
    mine = alice.get(f"/quotas/{alice.user_id}/usage").json()
    assert mine["gpus"] == 1


def test_ops_status_counts_phases_and_names_failures(
    admin: Caller, reconciler: Reconciler, new_user: Callable[[str], Caller], engine: Engine
) -> None:
    alice = new_user("alice")
    alice.post("/workspaces", json={"name": "research"})
    alice.post("/environments", json=spec("fine", "research"))
    too_big = spec("too-big", "research", resources={"gpus": {"count": 16, "model": "H100"}})
    alice.post("/environments", json=too_big)
    reconciler.run_until_idle()
    status = admin.get("/ops/status").json()
    assert status["shards"][0]["leader"] == "api-test"
    assert status["phases"].get("running") == 1
    assert sum(status["phases"].values()) == 2
    troubled = {t["name"]: t for t in status["failing"] + status["stuck"]}
    waiting = status["queue_depth"]
    assert "too-big" in troubled or waiting == 1, status


def test_an_admin_cannot_disable_themselves(admin: Caller, engine: Engine) -> None:
    """Found by a hostile review: the only platform admin disabled themselves (200) and locked the platform
    out. Disabling yourself is a 409, whoever else is admin; another admin may still be disabled."""
    refused = admin.post(f"/users/{admin.user_id}/disable")
    assert refused.status_code == 409, refused.text
    assert refused.json()["detail"] == "you cannot disable yourself; ask another platform admin"
    assert admin.get("/users/me").json()["disabled"] is False
    with engine.begin() as connection:
        other = register_user(
            connection,
            email="ops@example.org",
            username="ops",
            password="ops admin passphrase",
            role=UserRole.ADMIN,
        )
    assert admin.post(f"/users/{other.user_id}/disable").json()["disabled"] is True
    assert admin.post(f"/users/{admin.user_id}/disable").status_code == 409
