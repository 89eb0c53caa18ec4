"""The environment pipeline end to end: real Postgres, in-memory cluster, injected clock."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from remotegpu.core.accounts.workspaces import delete_workspace
from remotegpu.core.capacity.audit import audit
from remotegpu.core.capacity.quotas import read_quota
from remotegpu.core.environments.desired import update_spec
from remotegpu.core.environments.lifecycle import IllegalTransitionError, Trigger
from remotegpu.core.environments.states import DesiredState, Phase
from remotegpu.core.inventory.sync import ObservedNode, sync_inventory
from remotegpu.core.platform import clock
from remotegpu.core.platform.settings import Settings
from remotegpu.reconciler.environments import pipeline
from remotegpu.reconciler.environments.apply import LeaseLostError, apply
from remotegpu.reconciler.environments.leases import Lease, fetch_leases
from remotegpu.reconciler.environments.process import process
from remotegpu.reconciler.environments.results import advance
from remotegpu.reconciler.leader import FencedOutError
from remotegpu.tests.allocation_world import GIB
from remotegpu.tests.reconciler.world import SPEC, World, build_world
from remotegpu.tests.specs import environment_spec

START = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def world(engine: Engine, database_url: URL, sessions: object) -> Iterator[World]:
    with clock.frozen_at(START):
        made = build_world(engine, database_url, hosts=2)
        yield made
        made.reconciler.close()
    with engine.connect() as connection:
        assert audit(connection) == []


def test_submitted_environment_runs_stops_starts_and_is_deleted(world: World) -> None:
    env = world.submit("train")
    world.reconciler.run_until_idle()
    assert world.phase(env) == "running"
    assert world.cluster.live_pods() == [f"env-{env}"]
    assert world.active_gpu_claims() == 2
    assert world.row(env).observed_generation == 1

    world.desire(env, DesiredState.STOPPED)
    world.reconciler.run_until_idle()
    assert world.phase(env) == "stopped"
    assert world.cluster.live_pods() == []
    assert world.cluster.volumes[f"env-{env}"] == {"data"}, "stop keeps persistent volumes"
    assert world.active_gpu_claims() == 0

    world.desire(env, DesiredState.RUNNING)
    world.reconciler.run_until_idle()
    assert world.phase(env) == "running"

    world.desire(env, DesiredState.DELETED)
    world.reconciler.run_until_idle()
    row = world.row(env)
    assert (row.phase, row.deleted_at is not None) == ("deleted", True)
    assert world.cluster.volumes == {}, "delete removes the volumes too"
    assert world.active_gpu_claims() == 0


def test_every_transition_is_recorded_as_an_event(world: World) -> None:
    env = world.submit("train")
    world.reconciler.run_until_idle()
    with world.engine.connect() as connection:
        reasons = (
            connection.execute(
                text("SELECT reason FROM events WHERE environment_id = :e ORDER BY seq"), {"e": env}
            )
            .scalars()
            .all()
        )
    assert reasons == ["Admitted", "Scheduled", "Provisioning", "Running"]


def test_waiting_for_capacity_is_not_failure_and_proceeds_when_capacity_frees(world: World) -> None:
    big = {**SPEC, "resources": {"gpus": {"count": 8, "model": "H100"}}}
    first, second, third = world.submit("a", big), world.submit("b", big), world.submit("c", big)
    world.reconciler.run_until_idle()
    assert sorted(world.phase(e) for e in (first, second, third)) == ["admitted", "running", "running"]
    waiting = next(e for e in (first, second, third) if world.phase(e) == "admitted")
    assert (world.row(waiting).queue_position, world.row(waiting).queue_reason) == (1, "waiting for 8×H100")
    running = next(e for e in (first, second, third) if world.phase(e) == "running")
    world.desire(running, DesiredState.STOPPED)
    world.reconciler.run_until_idle()
    assert world.phase(waiting) == "running"
    assert world.row(waiting).queue_position is None


def test_a_stop_wins_over_in_flight_provisioning(world: World) -> None:
    world.cluster.start_delay = dt.timedelta(minutes=5)
    env = world.submit("slow")
    world.reconciler.run_until_idle()
    assert world.phase(env) == "provisioning"
    world.desire(env, DesiredState.STOPPED)
    with clock.frozen_at(START + dt.timedelta(seconds=1)):
        world.reconciler.run_until_idle()
    assert world.phase(env) == "stopped"
    assert world.cluster.live_pods() == []


def test_a_vanished_pod_on_a_healthy_host_is_recreated_with_the_same_claims(world: World) -> None:
    env = world.submit("train")
    world.reconciler.run_until_idle()
    host_before = world.row(env).host_id
    world.cluster.vanish(env)
    with clock.frozen_at(START + dt.timedelta(seconds=11)):  # past the resync period
        world.reconciler.run_until_idle()
    assert world.phase(env) == "running"
    assert world.row(env).host_id == host_before
    assert world.cluster.creates[f"env-{env}"] == 2
    assert world.active_gpu_claims() == 2


def test_a_lost_host_releases_the_claims_and_the_environment_moves_elsewhere(world: World) -> None:
    env = world.submit("train")
    world.reconciler.run_until_idle()
    lost = world.row(env).host_id
    with world.engine.begin() as connection:
        connection.execute(text("UPDATE hosts SET health = 'down' WHERE id = :h"), {"h": lost})
    with clock.frozen_at(START + dt.timedelta(seconds=11)):
        world.reconciler.run_until_idle()
    row = world.row(env)
    assert row.phase == "running"
    assert row.host_id not in (None, lost)
    assert world.active_gpu_claims() == 2


def test_a_deleted_workspace_keeps_its_claims_until_the_reconciler_has_deleted_the_pods(world: World) -> None:
    env = world.submit("train")
    world.reconciler.run_until_idle()
    with world.engine.begin() as connection:
        assert delete_workspace(connection, world.workspace, actor=world.user) == [env]
    with world.engine.connect() as connection:
        desired = connection.execute(
            text("SELECT desired_state, desired_version FROM environments WHERE id = :e"), {"e": env}
        ).one()
        assert audit(connection) == []
    assert tuple(desired) == ("deleted", 2)
    assert world.active_gpu_claims() == 2, "the pod still runs: its GPUs must not be placed again"

    world.cluster.unavailable = True  # the pod cannot be deleted yet
    world.reconciler.run_until_idle()
    assert (world.phase(env), world.cluster.live_pods()) == ("deleting", [f"env-{env}"])
    assert world.active_gpu_claims() == 2

    world.cluster.unavailable = False
    with clock.frozen_at(START + dt.timedelta(minutes=5)):  # past the retry backoff
        world.reconciler.run_until_idle()
    assert (world.phase(env), world.cluster.live_pods()) == ("deleted", [])
    assert world.active_gpu_claims() == 0


def test_storage_stays_counted_while_stopped_and_is_freed_by_the_delete(world: World) -> None:
    def used_storage() -> int:
        with world.engine.connect() as connection:
            return read_quota(connection, "workspace", world.workspace).used_storage_bytes

    env = world.submit("train")  # one 100Gi volume
    world.reconciler.run_until_idle()
    assert used_storage() == 100 * GIB
    world.desire(env, DesiredState.STOPPED)
    world.reconciler.run_until_idle()
    assert world.cluster.volumes[f"env-{env}"] == {"data"}
    assert used_storage() == 100 * GIB, "the volume persists, so does its storage quota"
    world.desire(env, DesiredState.RUNNING)
    world.reconciler.run_until_idle()
    assert used_storage() == 100 * GIB, "a restart does not count the same volume twice"
    world.desire(env, DesiredState.DELETED)
    world.reconciler.run_until_idle()
    assert (world.cluster.volumes, used_storage()) == ({}, 0)


def _report_nodes(world: World, gpus: dict[str, int]) -> None:
    """An inventory sync in which each node reports `gpus[name]` GPUs (8 when not named)."""
    nodes = [
        ObservedNode(name, True, gpus.get(name, 8), "H100", 80 * GIB, (), 128_000, 1024 * GIB, {})
        for name in world.hosts
    ]
    with world.engine.begin() as connection:
        sync_inventory(connection, nodes)


def test_a_lost_gpu_leaves_the_pool_and_its_environment_is_placed_again_after_its_pod_is_gone(
    world: World,
) -> None:
    env = world.submit("train")  # 2 GPUs: indexes 0 and 1 of its host
    world.reconciler.run_until_idle()
    node = next(name for name, host in world.hosts.items() if host == world.row(env).host_id)
    _report_nodes(world, {node: 1})  # indexes 1 to 7 are gone, among them one the environment holds
    with world.engine.connect() as connection:
        lost = connection.execute(
            text(
                "SELECT g.id, g.health FROM gpus g JOIN hosts h ON h.id = g.host_id WHERE h.name = :n"
                " AND g.index = 1"
            ),
            {"n": node},
        ).one()
        pool = connection.execute(
            text("SELECT total, free FROM gpu_pools WHERE host_id = :h"), {"h": world.hosts[node]}
        ).one()
    assert lost.health == "lost"
    assert tuple(pool) == (1, 0), "lost GPUs leave the pool, like unhealthy ones"

    later = START + dt.timedelta(seconds=11)  # past the resync period
    world.cluster.unavailable = True  # the pod cannot be deleted yet: the claims stay
    with clock.frozen_at(later):
        world.reconciler.run_until_idle()
    assert world.cluster.live_pods() == [f"env-{env}"]
    assert world.active_gpu_claims() == 2

    world.cluster.unavailable = False
    with clock.frozen_at(later + dt.timedelta(minutes=5)):
        world.reconciler.run_until_idle()
    assert world.phase(env) == "running"
    assert world.row(env).host_id != world.hosts[node], "placed again where two GPUs are left"
    with world.engine.connect() as connection:
        claimed = set(
            connection.execute(
                text("SELECT gpu_id FROM gpu_claims WHERE environment_id = :e AND released_at IS NULL"),
                {"e": env},
            ).scalars()
        )
        reasons = (
            connection.execute(
                text("SELECT reason FROM events WHERE environment_id = :e ORDER BY seq"), {"e": env}
            )
            .scalars()
            .all()
        )
    assert len(claimed) == 2
    assert lost.id not in claimed
    assert "GpuLost" in reasons

    _report_nodes(world, {})  # the GPU is back
    with world.engine.connect() as connection:
        assert connection.execute(text("SELECT health FROM gpus WHERE id = :g"), {"g": lost.id}).scalar() == (
            "healthy"
        )


def test_a_spec_change_while_running_restarts_with_the_new_spec(world: World) -> None:
    env = world.submit("train")
    world.reconciler.run_until_idle()
    with world.engine.begin() as connection:
        bigger = environment_spec("train", {**SPEC, "resources": {"gpus": {"count": 4, "model": "H100"}}})
        update_spec(connection, env, bigger)
    world.reconciler.run_until_idle()
    row = world.row(env)
    assert (row.phase, row.observed_generation, row.generation) == ("running", 2, 2)
    assert world.active_gpu_claims() == 4


def test_temporary_errors_back_off_exponentially_then_fail_past_the_deadline(
    engine: Engine, database_url: URL, sessions: object
) -> None:
    settings = Settings(backoff_base_seconds=2, backoff_cap_seconds=60, provisioning_deadline_seconds=120)
    with clock.frozen_at(START) as advance:
        world = build_world(engine, database_url, settings=settings)
        try:
            world.cluster.fail_image(SPEC["image"], "ImagePullBackOff")
            env = world.submit("bad-image")
            world.reconciler.run_until_idle()
            delays = []
            for attempt in range(1, 5):
                row = world.row(env)
                assert (row.phase, row.reason, row.retry_count) == (
                    "provisioning",
                    "ImagePullBackOff",
                    attempt,
                )
                delay = (row.next_attempt_at - clock.now()).total_seconds()
                delays.append(delay)
                assert 2 * 2 ** (attempt - 1) * 0.5 <= delay <= 2 * 2 ** (attempt - 1)
                advance(dt.timedelta(seconds=delay - 0.001))
                assert world.reconciler.run_until_idle() == 0, "no retry before its time"
                advance(dt.timedelta(seconds=0.002))
                world.reconciler.run_until_idle()
            advance(dt.timedelta(seconds=120))
            world.reconciler.run_until_idle()
            row = world.row(env)
            assert (row.phase, row.reason) == ("failed", "ImagePullBackOff")
            assert "deadline" in row.last_error
            assert world.active_gpu_claims() == 0, "failed releases its claims"
            assert world.cluster.live_pods() == []
            world.desire(env, DesiredState.RUNNING)  # an explicit start leaves failed
            world.cluster.heal_image(SPEC["image"])
            world.reconciler.run_until_idle()
            assert world.phase(env) == "running"
        finally:
            world.reconciler.close()


def test_a_permanent_pod_failure_fails_at_once_and_stays_failed(world: World) -> None:
    world.cluster.fail_image(SPEC["image"], "ErrImageNeverPull", retryable=False)
    env = world.submit("never")
    world.reconciler.run_until_idle()
    row = world.row(env)
    assert (row.phase, row.reason) == ("failed", "ErrImageNeverPull")
    with clock.frozen_at(START + dt.timedelta(minutes=5)):
        assert world.reconciler.run_until_idle() == 0, "failed is terminal for its generation"


def _lease_after_stop(world: World, name: str) -> tuple[uuid.UUID, Lease]:
    env = world.submit(name)
    world.reconciler.run_until_idle()
    world.desire(env, DesiredState.STOPPED)
    (lease,) = fetch_leases(world.reconciler.ctx, 10)
    assert lease.state.phase is Phase.RUNNING, "the lease carries the row it leased"
    return env, lease


def _stopping_events(world: World, env: uuid.UUID) -> int:
    with world.engine.connect() as connection:
        return int(
            connection.execute(
                text("SELECT count(*) FROM events WHERE environment_id = :e AND reason = 'Stopping'"),
                {"e": env},
            ).scalar_one()
        )


def test_an_apply_after_the_lease_changed_hands_writes_nothing(world: World) -> None:
    env, lease = _lease_after_stop(world, "contested")
    with world.engine.begin() as connection:  # another worker holds it now
        connection.execute(
            text("UPDATE environments SET lock_token = gen_random_uuid() WHERE id = :e"), {"e": env}
        )
    ctx = world.reconciler.ctx
    with pytest.raises(LeaseLostError):
        apply(ctx, lease, lease.state, process(ctx, lease.state), keep_lease=False)
    assert world.phase(env) == "running"
    assert _stopping_events(world, env) == 0


def test_a_fenced_out_leader_neither_leases_nor_applies(world: World) -> None:
    env, lease = _lease_after_stop(world, "fenced")
    ctx = world.reconciler.ctx
    with world.engine.begin() as connection:  # another replica took over
        connection.execute(text("UPDATE shard_leaders SET epoch = epoch + 1 WHERE shard = 0"))
    with pytest.raises(FencedOutError):
        apply(ctx, lease, lease.state, process(ctx, lease.state), keep_lease=False)
    with world.engine.begin() as connection:  # the lease is gone: the environment is due again
        connection.execute(
            text("UPDATE environments SET lock_token = NULL, lock_expires_at = NULL WHERE id = :e"),
            {"e": env},
        )
    assert fetch_leases(ctx, 10, nudge=[env]) == []
    assert world.phase(env) == "running"
    assert _stopping_events(world, env) == 0
    with world.engine.begin() as connection:  # with the epoch back, the same call leases it
        connection.execute(text("UPDATE shard_leaders SET epoch = epoch - 1 WHERE shard = 0"))
    assert [leased.environment_id for leased in fetch_leases(ctx, 10)] == [env]


def test_an_illegal_trigger_raises_and_writes_nothing(world: World, caplog: pytest.LogCaptureFixture) -> None:
    env, lease = _lease_after_stop(world, "illegal")
    ctx = world.reconciler.ctx
    with caplog.at_level(logging.ERROR), pytest.raises(IllegalTransitionError):
        apply(ctx, lease, lease.state, advance(Trigger.START, "Starting"), keep_lease=False)
    assert "illegal trigger" in caplog.text
    assert world.phase(env) == Phase.RUNNING
    with world.engine.connect() as connection:
        starting = connection.execute(
            text("SELECT count(*) FROM events WHERE environment_id = :e AND reason = 'Starting'"), {"e": env}
        ).scalar_one()
    assert starting == 0


def test_a_step_with_an_illegal_trigger_fails_loudly_and_leaves_the_row_alone(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    env, lease = _lease_after_stop(world, "illegal-step")
    monkeypatch.setattr(pipeline, "process", lambda ctx, env: advance(Trigger.FINISH_DELETE, "Deleted"))
    with caplog.at_level(logging.ERROR):
        world.reconciler._reconcile(lease)
    assert world.reconciler.steps_failed == 1
    assert "Step failed" in caplog.text
    row = world.row(env)
    assert (row.phase, row.deleted_at) == (Phase.RUNNING, None)
    assert world.cluster.live_pods() == [f"env-{env}"]
