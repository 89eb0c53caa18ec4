"""Shards: environments spread over shards by id, processes leading their fair share of shards, each
environment's steps written by the leader of its own shard, and a departed process's shards taken over."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from remotegpu.core.capacity.audit import audit
from remotegpu.core.environments.shards import rebalance, shard_of, shard_of_sql
from remotegpu.core.environments.states import DesiredState
from remotegpu.core.platform.fencing_audit import late_writes
from remotegpu.core.platform.settings import Settings
from remotegpu.reconciler.shards import ShardedReconciler
from remotegpu.tests.polling import poll_until
from remotegpu.tests.reconciler.world import World, build_world

SHARDED = Settings(heartbeat_seconds=0.2, resync_seconds=1.0, lease_seconds=5.0, reconciler_shards=2)


@pytest.fixture
def world(engine: Engine, database_url: URL, sessions: object) -> Iterator[World]:
    made = build_world(engine, database_url, hosts=2)
    made.reconciler.close()  # these tests run their own processes
    yield made
    with engine.connect() as connection:
        assert audit(connection) == []
        assert late_writes(connection) == []


class Process:
    """A `ShardedReconciler` running in a thread, as `remotegpu reconciler` runs one."""

    def __init__(self, world: World, name: str, settings: Settings = SHARDED) -> None:
        self.stop = threading.Event()
        self.sharded = ShardedReconciler(
            world.url, world.cluster, settings, identity=name, listen=False, secrets=world.secrets
        )
        self.thread = threading.Thread(target=self.sharded.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def led(self) -> list[int]:
        return self.sharded.led_shards()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def test_the_shard_of_an_id_is_the_same_in_python_and_in_sql(engine: Engine) -> None:
    ids = [uuid.uuid4() for _ in range(200)] + [uuid.UUID(int=0), uuid.UUID(int=2**128 - 1)]
    with engine.connect() as connection:
        for shards in (1, 2, 3, 7):
            rows = connection.execute(
                text(f"SELECT id, {shard_of_sql('id')} AS shard FROM unnest(CAST(:ids AS uuid[])) AS t(id)"),
                {"ids": ids, "shards": shards},
            ).all()
            assert {row.id: row.shard for row in rows} == {i: shard_of(i, shards) for i in ids}
    assert {shard_of(i, 3) for i in ids} == {0, 1, 2}


def test_admission_gives_each_environment_its_shard_and_rebalance_follows_a_new_count(
    world: World, engine: Engine
) -> None:
    process = Process(world, "only")
    try:
        envs = [world.submit(f"env-{i}") for i in range(8)]
        poll_until(
            lambda: all(world.phase(env) == "running" for env in envs), 30, "every environment running"
        )
        assert sorted(process.led()) == [0, 1], "alone, a process leads every shard"
    finally:
        process.close()
    with engine.begin() as connection:
        shards: dict[uuid.UUID, int] = dict(
            connection.execute(text("SELECT id, shard FROM environments")).all()
        )
        assert shards == {env: shard_of(env, 2) for env in envs}
        assert set(shards.values()) == {0, 1}
        moved = rebalance(connection, 3)
        after: dict[uuid.UUID, int] = dict(
            connection.execute(text("SELECT id, shard FROM environments")).all()
        )
    assert after == {env: shard_of(env, 3) for env in envs}
    assert moved == sum(shard_of(env, 3) != shard_of(env, 2) for env in envs)


def test_two_processes_each_lead_one_shard_and_each_environment_is_worked_by_its_shards_leader(
    world: World, engine: Engine
) -> None:
    first = Process(world, "first")
    try:
        poll_until(lambda: sorted(first.led()) == [0, 1], 20, "the first process leading both shards")
        second = Process(world, "second")
        try:
            poll_until(lambda: len(first.led()) == 1 and len(second.led()) == 1, 20, "one shard each")
            envs = [world.submit(f"env-{i}") for i in range(8)]  # 2 GPUs each: the 2 hosts' 16
            poll_until(
                lambda: [world.phase(env) for env in envs],
                30,
                "every environment running",
                until=lambda phases: all(phase == "running" for phase in phases),
            )
            with engine.connect() as connection:
                rows = connection.execute(
                    text("SELECT shard, writer_shard FROM environments WHERE id = ANY(:ids)"), {"ids": envs}
                ).all()
                leaders: dict[int, str] = dict(
                    connection.execute(text("SELECT shard, leader_id FROM shard_leaders")).all()
                )
            assert {row.shard for row in rows} == {0, 1}
            assert all(row.writer_shard == row.shard for row in rows), "the last step ran on the env's shard"
            assert sorted(leaders.values()) == ["first", "second"]
        finally:
            second.close()
        poll_until(lambda: sorted(first.led()) == [0, 1], 20, "the remaining process taking both shards")
        world.desire(envs[0], DesiredState.STOPPED)
        poll_until(lambda: world.phase(envs[0]) == "stopped", 30, "a step on either shard still happens")
    finally:
        first.close()
