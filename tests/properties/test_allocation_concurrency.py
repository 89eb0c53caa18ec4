"""Allocation invariants under real concurrency: several processes, real Postgres, forced interleavings.

Invariants (checked over the claim history and the counters by `core.capacity.audit.audit`, after every
schedule): no GPU and no (host, port, protocol) is ever held by two environments at once; no claim
commits above a workspace GPU limit in force at its commit; nothing is claimed on a cordoned host or an
unhealthy GPU; counters equal the claims; no active claim outlives its environment's delete; every worker
finishes (no deadlock); once everything is released, every healthy GPU is free again.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from remotegpu.core.capacity.audit import audit
from remotegpu.core.capacity.release import release
from remotegpu.core.inventory.hosts import uncordon_host
from remotegpu.core.platform.db import make_engine
from remotegpu.ops.migrate import upgrade
from remotegpu.ops.postgres import create_fresh_database, drop_database
from remotegpu.tests.properties.harness import (
    ENVIRONMENT_SIZES,
    Operation,
    WorkerPool,
    World,
    reset,
    seed,
    steps_to_workers,
)

WORKERS = 3
PAUSE_POINTS = ("quota-locked", "quota-checked", "host-locked", "gpus-chosen")


@pytest.fixture(scope="module")
def pool(engine: Engine, database_url: URL) -> Iterator[WorkerPool]:
    workers = WorkerPool(database_url, WORKERS)
    yield workers
    workers.close()
    reset(engine)  # leave the shared test database empty for the tests that follow


def _environments() -> st.SearchStrategy[int]:
    return st.integers(0, len(ENVIRONMENT_SIZES) - 1)


operations: st.SearchStrategy[Operation] = st.one_of(
    st.tuples(
        st.just("allocate"),
        _environments(),
        st.sampled_from((None, *PAUSE_POINTS)),
        st.sampled_from((0, 2, 10)),
    ),
    st.tuples(st.just("allocate"), _environments(), st.just(None), st.just(0)),
    st.tuples(
        st.just("allocate_batch"),
        st.lists(_environments(), min_size=1, max_size=5),
        st.lists(st.integers(0, 1), min_size=5, max_size=5),
    ),
    st.tuples(st.just("release"), _environments()),
    st.tuples(st.just("cordon"), st.integers(0, 1)),
    st.tuples(st.just("uncordon"), st.integers(0, 1)),
    st.tuples(st.just("gpu"), st.integers(0, 1), st.integers(0, 3), st.booleans()),
    st.tuples(st.just("quota"), st.integers(0, 1), st.integers(0, 8)),
    st.tuples(st.just("delete_workspace"), st.integers(0, 1)),
)
schedules = st.lists(st.lists(operations, min_size=WORKERS, max_size=WORKERS), min_size=1, max_size=8)


def _release_everything_and_check_reuse(engine: Engine, world: World) -> None:
    with engine.begin() as connection:
        for request in world.requests:
            release(connection, request.environment_id)
        for host in world.hosts:
            uncordon_host(connection, host)
    with engine.connect() as connection:
        assert audit(connection) == []
        pools = connection.execute(text("SELECT total, free FROM gpu_pools")).all()
        unhealthy = connection.execute(
            text("SELECT count(*) FROM gpus WHERE health = 'unhealthy'")
        ).scalar_one()
    assert all(free == total for total, free in pools), "released GPUs must all be free again"
    assert sum(total for total, _ in pools) == 8 - unhealthy


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(schedule=schedules)
def test_concurrent_schedules_keep_every_allocation_invariant(
    engine: Engine, pool: WorkerPool, schedule: list[list[Operation]]
) -> None:
    """Invariant: for every schedule, the history and counters are clean and released GPUs are reusable."""
    world = seed(engine)
    pool.run(world, steps_to_workers(schedule, WORKERS))
    with engine.connect() as connection:
        assert audit(connection) == []
    _release_everything_and_check_reuse(engine, world)


def test_seeded_stress_loop_keeps_every_invariant(engine: Engine, pool: WorkerPool) -> None:
    """Invariant: hundreds of unsynchronised operations per worker leave a clean history and counters."""
    rng = random.Random(20261124)
    world = seed(engine, workspace_gpu_limit=7)

    def random_operation() -> Operation:
        roll = rng.random()
        env = rng.randrange(len(ENVIRONMENT_SIZES))
        if roll < 0.4:
            return ("allocate", env, None, 0)
        if roll < 0.5:
            planned = rng.sample(range(len(ENVIRONMENT_SIZES)), rng.randint(1, 4))
            return ("allocate_batch", planned, [rng.randrange(2) for _ in planned])
        if roll < 0.85:
            return ("release", env)
        if roll < 0.9:
            return (rng.choice(("cordon", "uncordon")), rng.randrange(2))
        if roll < 0.95:
            return ("gpu", rng.randrange(2), rng.randrange(4), rng.random() < 0.6)
        return ("quota", rng.randrange(2), rng.randrange(3, 9))

    plans = [[random_operation() for _ in range(400)] for _ in range(WORKERS)]
    results = pool.run(world, plans, synchronised=False)
    outcomes = [outcome for worker in results for joined in worker for outcome in joined.split(",")]
    batched = [
        outcome
        for plan, worker in zip(plans, results, strict=True)
        for operation, joined in zip(plan, worker, strict=True)
        if operation[0] == "allocate_batch"
        for outcome in joined.split(",")  # a batch reports one outcome per environment
    ]
    assert batched.count("allocated") >= 10, "batches must really claim under contention"
    # the loop must really contend: many allocations, and refusals for capacity or quota
    assert outcomes.count("allocated") >= 40
    assert outcomes.count("no-capacity") + outcomes.count("over-quota") >= 40
    with engine.connect() as connection:
        assert audit(connection) == []
    _release_everything_and_check_reuse(engine, world)


def test_without_the_quota_lock_the_audit_catches_a_quota_overrun(engine: Engine, database_url: URL) -> None:
    world = seed(engine, workspace_gpu_limit=2)
    # Environments 1 and 7 ask for 2 GPUs each in workspace 1 (limit 2): each fits alone, not both. They
    # want different models, so they land on different hosts; both meet at a barrier after their quota
    # check, so both pass it before either writes.
    requests = list(world.requests)
    requests[1] = dataclasses.replace(requests[1], gpu_model="H100")
    requests[7] = dataclasses.replace(requests[7], gpu_model="A100")
    racing = dataclasses.replace(world, requests=tuple(requests))
    workers = WorkerPool(database_url, 2)
    try:
        outcomes = workers.run(
            racing,
            [[("allocate", 1, "quota-checked", "barrier")], [("allocate", 7, "quota-checked", "barrier")]],
            unsafe={"unsafe_skip_quota_lock": True},
        )
    finally:
        workers.close()
    assert outcomes == [["allocated"], ["allocated"]]
    with engine.connect() as connection:
        findings = audit(connection)
    assert any("over its limit 2" in finding for finding in findings), findings


def test_with_the_quota_lock_the_same_race_is_refused(engine: Engine, pool: WorkerPool) -> None:
    world = seed(engine, workspace_gpu_limit=2)
    racers: list[list[Operation]] = [
        [("allocate", 1, "quota-checked", 20)],
        [("allocate", 5, "quota-checked", 20)],
        [("noop",)],
    ]
    outcomes = pool.run(world, racers)
    assert sorted(outcome for (outcome,) in outcomes[:2]) == ["allocated", "over-quota"]
    with engine.connect() as connection:
        assert audit(connection) == []


@pytest.fixture
def database_without_claim_indexes(postgres_server_url: URL) -> Iterator[URL]:
    """A separate database whose last line of defence (the active-claim unique indexes) is gone."""
    url = create_fresh_database(postgres_server_url, "remotegpu_broken")
    upgrade(url)
    broken = make_engine(url, pool_size=1)
    with broken.begin() as connection:
        connection.execute(text("DROP INDEX uq_gpu_claims_gpu_id_active"))
        connection.execute(text("DROP INDEX uq_port_mappings_host_port_active"))
    broken.dispose()
    yield url
    drop_database(url)


def test_without_host_lock_and_unique_index_the_audit_catches_a_double_allocation(
    database_without_claim_indexes: URL,
) -> None:
    engine = make_engine(database_without_claim_indexes, pool_size=2)
    workers = WorkerPool(database_without_claim_indexes, 2)
    try:
        world = seed(engine)
        # environments 0 and 5 belong to different workspaces, so no quota lock orders them
        racers: list[list[Operation]] = [
            [("allocate", 0, "gpus-chosen", "barrier")],
            [("allocate", 5, "gpus-chosen", "barrier")],
        ]
        # both try the same host first: without its lock, both take the same GPUs
        outcomes = workers.run(
            world, racers, unsafe={"unsafe_skip_host_lock": True, "prefer_first_host": True}
        )
        assert outcomes == [["allocated"], ["allocated"]]
        with engine.connect() as connection:
            findings = audit(connection)
        assert any("while held by" in finding for finding in findings), findings
    finally:
        workers.close()
        engine.dispose()
