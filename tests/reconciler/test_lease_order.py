"""What a lease takes first, and how it finds it: a user's change, then work with a phase to move, then
the resyncs of settled running environments, each read from a partial index of its own."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from remotegpu.core.capacity.audit import audit
from remotegpu.core.environments import due
from remotegpu.core.environments.states import DesiredState, Phase
from remotegpu.core.platform import clock
from remotegpu.core.platform.settings import Settings
from remotegpu.reconciler.environments.leases import _LEASE_SQL, fetch_leases
from remotegpu.reconciler.scheduler import schedule_pass
from remotegpu.tests.polling import poll_until
from remotegpu.tests.reconciler.world import World, build_world

START = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def world(engine: Engine, database_url: URL, sessions: object) -> Iterator[World]:
    with clock.frozen_at(START):
        made = build_world(engine, database_url, hosts=2)
        yield made
        made.reconciler.close()


def _leased(world: World, limit: int) -> list[uuid.UUID]:
    return [lease.environment_id for lease in fetch_leases(world.reconciler.ctx, limit)]


def test_a_change_then_work_come_before_the_resyncs_due_before_them(world: World) -> None:
    running = [world.submit(f"settled-{index}") for index in range(3)]
    world.reconciler.run_until_idle()
    assert {world.phase(env) for env in running} == {Phase.RUNNING}
    resync = dt.timedelta(seconds=world.reconciler.ctx.settings.resync_seconds)
    with clock.frozen_at(START + 2 * resync):  # every running one is due for its resync, long overdue
        new = world.submit("new")
        schedule_pass(world.reconciler.ctx)
        assert world.phase(new) == Phase.SCHEDULED, "placed: a phase to move, due now"
        world.desire(running[0], DesiredState.STOPPED)

        assert _leased(world, 1) == [running[0]], "the user's change first"
        assert _leased(world, 1) == [new], "then work, though every resync was due earlier"
        assert sorted(_leased(world, 10)) == sorted(running[1:]), "the resyncs fill what work leaves"
        assert _leased(world, 10) == []
    with world.engine.connect() as connection:
        assert audit(connection) == []


def test_a_resync_is_taken_when_no_work_is_due(world: World) -> None:
    env = world.submit("settled")
    world.reconciler.run_until_idle()
    assert _leased(world, 10) == [], "not due before its resync"
    resync = dt.timedelta(seconds=world.reconciler.ctx.settings.resync_seconds)
    with clock.frozen_at(START + resync + dt.timedelta(seconds=1)):
        assert _leased(world, 10) == [env]


def test_a_resync_that_moves_nothing_wakes_the_lease_loop_and_not_the_scheduling_pass(world: World) -> None:
    """At scale nearly every step is a settled environment's resync: waking the scheduling pass after
    each (it polls anyway) kept it admitting nothing a thousand times a second."""
    env = world.submit("settled")
    world.reconciler.run_until_idle()
    wakes = world.reconciler._wake, world.reconciler._schedule_wake
    resync = dt.timedelta(seconds=world.reconciler.ctx.settings.resync_seconds)
    with clock.frozen_at(START + resync + dt.timedelta(seconds=1)):
        for wake in wakes:
            wake.clear()
        (lease,) = fetch_leases(world.reconciler.ctx, 10)
        world.reconciler._reconcile(lease)
        assert world.phase(env) == Phase.RUNNING
        assert [wake.is_set() for wake in wakes] == [True, False]

        world.desire(env, DesiredState.STOPPED)  # a stop releases claims: the pass may place others
        for wake in wakes:
            wake.clear()
        for lease in fetch_leases(world.reconciler.ctx, 10):
            world.reconciler._reconcile(lease)
        assert world.phase(env) in {Phase.STOPPING, Phase.STOPPED}
        assert [wake.is_set() for wake in wakes] == [True, True]


# A shard's worth of rows in the mix a busy shard holds: mostly running (half of them due for a
# resync), waiting for a placement, deleted, stopped; a few with work to do or a user's change.
_SEED = """
INSERT INTO environments (workspace_id, user_id, name, spec, phase, desired_state, generation,
                          observed_generation, desired_version, seen_desired_version, next_attempt_at)
SELECT :workspace, :user, 'seeded-' || i, '{}',
       CASE WHEN i % 100 < 70 THEN 'running' WHEN i % 100 < 80 THEN 'admitted'
            WHEN i % 100 < 90 THEN 'deleted' WHEN i % 100 < 95 THEN 'stopped'
            WHEN i % 100 < 98 THEN 'provisioning' ELSE 'pending' END,
       CASE WHEN i % 100 BETWEEN 80 AND 89 THEN 'deleted'
            WHEN i % 100 BETWEEN 90 AND 94 THEN 'stopped' ELSE 'running' END,
       1, 1, CASE WHEN i % 500 = 0 THEN 2 ELSE 1 END, 1,
       :now + ((i % 20) - 10) * interval '1 second'
  FROM generate_series(1, 5000) AS i
"""


def _plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _plan_nodes(child)


@pytest.mark.parametrize("analyzed", [True, False], ids=["statistics", "no-statistics"])
def test_a_lease_reads_each_way_to_be_due_from_its_index(world: World, analyzed: bool) -> None:
    world.reconciler.run_until_idle()  # leads the shard: the statement's fencing check holds
    ctx = world.reconciler.ctx
    now = clock.now()
    with world.engine.begin() as connection:
        connection.execute(text(_SEED), {"workspace": world.workspace, "user": world.user, "now": now})
        if analyzed:
            connection.execute(text("ANALYZE environments"))
        parameters = {
            "now": now,
            "limit": 8,
            "expires": now + ctx.lease,
            "owner": ctx.identity,
            "shard": ctx.shard,
            "epoch": ctx.epoch,
        }
        (plan,) = connection.execute(
            text("EXPLAIN (FORMAT JSON) " + _LEASE_SQL.text), parameters
        ).scalar_one()
        nodes = list(_plan_nodes(plan["Plan"]))
        connection.execute(text("DELETE FROM environments WHERE name LIKE 'seeded-%'"))
    scans = {
        (node["Node Type"], node.get("Index Name"))
        for node in nodes
        if node.get("Relation Name") == "environments"
    } | {
        (node["Node Type"], node.get("Index Name"))
        for node in nodes
        if node["Node Type"] == "Bitmap Index Scan"
    }
    assert not [scan for scan in scans if scan[0] == "Seq Scan"], scans
    indexes = {name for _, name in scans if name is not None}
    assert {
        "ix_environments_due_changed",
        "ix_environments_due_work",
        "ix_environments_due_resync",
    } <= indexes


def test_the_migrated_indexes_have_the_predicates_the_lease_names(engine: Engine, sessions: object) -> None:
    """The migration copies each class's predicate; a class changed without a migration would leave the
    lease proving nothing from its index (and reading the whole table). Postgres reads both forms."""
    with engine.begin() as connection:
        connection.execute(text("CREATE TEMP TABLE wanted (LIKE environments) ON COMMIT DROP"))
        for name, predicate in (("changed", due.CHANGED), ("work", due.WORK), ("resync", due.RESYNC)):
            connection.execute(
                text(f"CREATE INDEX wanted_{name} ON wanted (shard, {due.DUE_AT}) WHERE {predicate}")
            )
        definitions: dict[str, str] = dict(
            connection.execute(
                text(
                    "SELECT replace(replace(c.relname, 'ix_environments_due_', ''), 'wanted_', ''),"
                    "       pg_get_expr(i.indpred, i.indrelid) || ' ON ' || pg_get_indexdef(i.indexrelid, 2, true)"
                    "  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                    " WHERE c.relname LIKE 'ix_environments_due_%' AND c.relnamespace = 'public'::regnamespace"
                )
            ).all()
        )
        wanted: dict[str, str] = dict(
            connection.execute(
                text(
                    "SELECT replace(c.relname, 'wanted_', ''),"
                    "       pg_get_expr(i.indpred, i.indrelid) || ' ON ' || pg_get_indexdef(i.indexrelid, 2, true)"
                    "  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname LIKE 'wanted_%'"
                )
            ).all()
        )
    assert set(wanted) == {"changed", "work", "resync"}
    assert definitions == wanted


def test_a_tick_queues_a_workers_count_behind_the_workers_and_leases_no_more_until_it_drains(
    engine: Engine, database_url: URL, sessions: object
) -> None:
    made = build_world(engine, database_url, hosts=2, settings=Settings(reconcile_workers=2))
    reconciler = made.reconciler
    gate = threading.Event()
    try:
        envs = [made.submit(f"queued-{index}") for index in range(10)]
        reconciler.run_until_idle(max_rounds=0)  # leads; nothing reconciled yet
        schedule_pass(reconciler.ctx)  # admitted and placed: ten due with work to do
        workers = reconciler._workers
        for _ in range(2):  # both workers busy elsewhere: what the tick leases waits in their queue
            workers.submit(gate.wait, 20)
        reconciler.tick()
        assert len(reconciler._in_flight) == 4, "the two workers' share and as many queued behind them"
        reconciler.tick()
        assert len(reconciler._in_flight) == 4, "more in flight than workers: nothing more leased"
        with engine.connect() as connection:
            leased = connection.execute(
                text("SELECT count(*) FROM environments WHERE lock_owner = :me AND id = ANY(:ids)"),
                {"me": reconciler.identity, "ids": envs},
            ).scalar_one()
        assert leased == 4
        gate.set()
        poll_until(lambda: reconciler.steps_done, 20, "the queued steps", until=lambda done: done == 4)
        reconciler.tick()
        assert 0 < len(reconciler._in_flight) <= 4, "drained: the tick leases again"
    finally:
        gate.set()
        reconciler.close()


def test_a_queued_lease_is_dropped_unworked_once_it_waited_past_half_its_lease_or_its_term_ended(
    world: World,
) -> None:
    reconciler = world.reconciler
    env = world.submit("queued-late")
    reconciler.run_until_idle(max_rounds=0)  # leads
    schedule_pass(reconciler.ctx)
    (lease,) = fetch_leases(reconciler.ctx, 1)
    epoch, steps = reconciler.ctx.epoch, reconciler.steps_done
    half = reconciler.ctx.settings.lease_seconds / 2
    reconciler._reconcile(lease, time.monotonic() - half - 1, epoch)
    assert (reconciler.steps_done, world.phase(env)) == (steps, Phase.SCHEDULED), "too late to start on"
    assert epoch is not None
    reconciler._reconcile(lease, time.monotonic(), epoch - 1)
    assert (reconciler.steps_done, world.phase(env)) == (steps, Phase.SCHEDULED), "leased in another term"
    reconciler._reconcile(lease, time.monotonic(), epoch)
    assert reconciler.steps_done == steps + 1
    assert world.phase(env) != Phase.SCHEDULED, "in time and in its term: worked on"
