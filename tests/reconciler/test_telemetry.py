"""The reconciler's metrics say what happened: leadership, steps by phase and outcome, retries by reason,
leader jobs; and, from the leader of shard 0 only, the platform's capacity, queue, environments, money
and meter lag as the database holds them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from remotegpu.core.platform import clock
from remotegpu.core.platform.settings import Settings
from remotegpu.reconciler.metering import meter_tick
from remotegpu.tests.reconciler.world import World, build_world

GPU_SPEC = {
    "image": "pytorch:latest",
    "resources": {"gpus": {"count": 4, "model": "H100"}, "cpu": 4, "memory": "8Gi"},
}


@pytest.fixture
def world(engine: Engine, database_url: URL, sessions: object) -> Iterator[World]:
    made = build_world(engine, database_url, hosts=2)
    yield made
    made.reconciler.close()


def value(world: World, name: str, **labels: str) -> float | None:
    return world.reconciler.metrics.registry.get_sample_value(name, labels)


def test_leadership_steps_and_the_platform_gauges(world: World) -> None:
    for index in range(5):  # 2 hosts × 8 GPUs hold four of these; the fifth waits in the queue
        world.submit(f"train-{index}", GPU_SPEC)
    world.reconciler.run_until_idle()

    assert value(world, "remotegpu_reconciler_leader", shard="0") == 1
    assert value(world, "remotegpu_reconciler_epoch", shard="0") == world.reconciler.ctx.epoch
    assert value(world, "remotegpu_reconciler_leadership_acquired_total", shard="0") == 1
    started = value(
        world, "remotegpu_reconcile_step_duration_seconds_count", phase="scheduled", result="advance"
    )
    assert started == 4, "each placed environment's pod was created once"

    states = {
        state: value(world, "remotegpu_gpus", host=host, model="H100", state=state)
        for host in world.hosts
        for state in ("free", "claimed")
    }
    claimed = sum(
        value(world, "remotegpu_gpus", host=h, model="H100", state="claimed") or 0 for h in world.hosts
    )
    free = sum(value(world, "remotegpu_gpus", host=h, model="H100", state="free") or 0 for h in world.hosts)
    assert (claimed, free) == (16, 0), states
    assert value(world, "remotegpu_environments", phase="running", desired_state="running") == 4
    assert value(world, "remotegpu_queue_length", model="H100") == 1
    assert (value(world, "remotegpu_queue_oldest_wait_seconds", model="H100") or -1) >= 0
    assert all(value(world, "remotegpu_host_up", host=host) == 1 for host in world.hosts)
    assert value(world, "remotegpu_host_ports_free", host="node-0") is not None
    assert value(world, "remotegpu_platform_gauges_up") == 1


def test_retries_count_by_reason_and_a_deadline_failure_is_counted(
    engine: Engine, database_url: URL, sessions: object
) -> None:
    settings = Settings(provisioning_deadline_seconds=60)
    with clock.frozen_at(dt.datetime(2026, 11, 30, 12, tzinfo=dt.UTC)) as advance:
        world = build_world(engine, database_url, settings=settings)
        try:
            world.cluster.fail_image("broken:1", "ImagePullBackOff")
            env = world.submit("broken", {**GPU_SPEC, "image": "broken:1"})
            world.reconciler.run_until_idle()
            for _ in range(4):
                advance(dt.timedelta(seconds=30))
                world.reconciler.run_until_idle()
            assert world.phase(env) == "failed"
            metrics = world.reconciler.metrics.registry
            backoffs = metrics.get_sample_value(
                "remotegpu_reconcile_backoffs_total", {"phase": "provisioning", "reason": "ImagePullBackOff"}
            )
            assert backoffs is not None
            assert backoffs >= 1
            assert (
                metrics.get_sample_value(
                    "remotegpu_reconcile_deadline_failures_total", {"phase": "provisioning"}
                )
                == 1
            )
            failed = metrics.get_sample_value(
                "remotegpu_reconcile_errors_total", {"phase": "provisioning", "reason": "ImagePullBackOff"}
            )
            assert failed == (backoffs or 0) + 1, "every retry and the failure"
        finally:
            world.reconciler.close()


def test_money_and_meter_lag_come_from_the_meters(world: World) -> None:
    start = dt.datetime(2026, 11, 30, 12, tzinfo=dt.UTC)
    with world.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO prices (resource, gpu_model, unit_price, effective_from) VALUES ('gpu', 'H100', 2, :t)"
            ),
            {"t": start - dt.timedelta(days=1)},
        )
    with clock.frozen_at(start) as advance:
        world.submit("train", GPU_SPEC)
        world.reconciler.run_until_idle()
        advance(dt.timedelta(hours=1))
        assert value(world, "remotegpu_meter_lag_seconds") == pytest.approx(3600)
        meter_tick(world.reconciler.ctx)  # an hour passed: every meter reached a close point
        with world.engine.connect() as connection:
            workspace = connection.execute(
                text("SELECT name FROM workspaces WHERE id = :id"), {"id": world.workspace}
            ).scalar_one()
        accrued = value(
            world, "remotegpu_billing_accrued_total", workspace=workspace, resource="gpu", currency="USD"
        )
        assert accrued == pytest.approx(8.0), "4 GPUs × 1 h × 2 USD"
        assert value(world, "remotegpu_meter_lag_seconds") == 0


def test_a_standby_exports_no_platform_gauges(world: World, database_url: URL) -> None:
    from remotegpu.reconciler.loop import Reconciler

    world.reconciler.run_until_idle()  # the world's replica leads
    standby = Reconciler(database_url, world.cluster, Settings(), identity="standby", listen=False)
    try:
        assert not standby.is_leader
        registry = standby.metrics.registry
        assert registry.get_sample_value("remotegpu_reconciler_leader", {"shard": "0"}) == 0
        assert registry.get_sample_value("remotegpu_platform_gauges_up") is None
        assert (
            registry.get_sample_value("remotegpu_gpus", {"host": "node-0", "model": "H100", "state": "free"})
            is None
        )
    finally:
        standby.close()


def test_a_closing_leader_gives_back_the_leases_it_will_not_work_on(world: World) -> None:
    from remotegpu.reconciler.environments.leases import fetch_leases

    for index in range(2):
        world.submit(f"queued-{index}", GPU_SPEC)
    world.reconciler.run_until_idle()
    with world.engine.begin() as connection:  # due again (a resync)
        connection.execute(text("UPDATE environments SET next_attempt_at = now() - interval '1 second'"))
    leased = fetch_leases(world.reconciler.ctx, 10)  # taken, as a worker queue would, then never run
    assert leased
    world.reconciler.close()
    with world.engine.connect() as connection:
        held = connection.execute(
            text("SELECT count(*) FROM environments WHERE lock_token IS NOT NULL")
        ).scalar_one()
    assert held == 0, "the next leader need not wait for the leases to expire"
