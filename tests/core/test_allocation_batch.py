"""Batch allocation (`allocate_planned`) against real Postgres: the same claims, counters and refusals as
allocating one by one, in a handful of statements."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import Connection, Engine, text

from remotegpu.core.capacity.batch import PlannedAllocation, allocate_planned
from remotegpu.core.capacity.quotas import QuotaLimits, read_quota, set_quota
from remotegpu.core.capacity.release import release
from remotegpu.core.capacity.requests import (
    AllocationOutcome,
    AllocationRequest,
    AllocationResult,
    PortRequest,
)
from remotegpu.core.environments.desired import set_desired_state
from remotegpu.core.environments.states import DesiredState, PortPurpose, Protocol
from remotegpu.core.inventory.hosts import cordon_host
from remotegpu.core.platform.locks import LockNamespace, lock_key, try_xact_lock
from remotegpu.tests.allocation_world import make_environment, make_host

SSH = PortRequest(22, Protocol.TCP, PortPurpose.SSH)
JUPYTER = PortRequest(8888, Protocol.TCP, PortPurpose.JUPYTER)


def _claims(connection: Connection) -> list[tuple[uuid.UUID, uuid.UUID]]:
    return [
        (row.environment_id, row.gpu_id)
        for row in connection.execute(
            text("SELECT environment_id, gpu_id FROM gpu_claims WHERE released_at IS NULL")
        )
    ]


def test_a_batch_on_one_host_takes_distinct_gpus_and_ports_and_counts_them(
    db: Engine, tenant: tuple[uuid.UUID, uuid.UUID]
) -> None:
    workspace, user = tenant
    with db.begin() as connection:
        host = make_host(connection, gpus=8)
        requests = [
            make_environment(connection, workspace, user, gpus=2, ports=[SSH, JUPYTER]) for _ in range(3)
        ]
    with db.begin() as connection:
        results = allocate_planned(connection, [PlannedAllocation(r, host, "H100") for r in requests])
    assert {result.outcome for result in results.values()} == {AllocationOutcome.ALLOCATED}
    assert all(result.host_id == host for result in results.values())
    with db.connect() as connection:
        claims = _claims(connection)
        free = connection.execute(
            text("SELECT free FROM gpu_pools WHERE host_id = :h"), {"h": host}
        ).scalar_one()
        ports = connection.execute(
            text(
                "SELECT environment_id, container_port, host_port FROM port_mappings WHERE released_at IS NULL"
            )
        ).all()
        usage = read_quota(connection, "workspace", workspace)
    assert len({gpu for _, gpu in claims}) == 6
    assert free == 2
    assert sorted(port.host_port for port in ports) == list(range(30000, 30006))
    assert {port.environment_id for port in ports} == {r.environment_id for r in requests}
    assert (usage.used_gpus, usage.running_environments, usage.used_gpus_by_model) == (6, 3, {"H100": 6})


def test_quota_counts_the_batch_as_it_goes(db: Engine, tenant: tuple[uuid.UUID, uuid.UUID]) -> None:
    workspace, user = tenant
    with db.begin() as connection:
        set_quota(connection, "workspace", workspace, QuotaLimits(max_gpus=3, max_gpus_by_model={"H100": 3}))
        host = make_host(connection, gpus=8)
        requests = [make_environment(connection, workspace, user, gpus=1) for _ in range(4)]
    with db.begin() as connection:
        results = allocate_planned(connection, [PlannedAllocation(r, host, "H100") for r in requests])
    outcomes = [results[r.environment_id].outcome for r in requests]
    assert outcomes == [AllocationOutcome.ALLOCATED] * 3 + [AllocationOutcome.OVER_QUOTA]
    assert "over by 1" in results[requests[3].environment_id].reason
    with db.connect() as connection:
        usage = read_quota(connection, "workspace", workspace)
    assert (usage.used_gpus, usage.used_gpus_by_model["H100"]) == (3, 3)


def test_a_plan_that_no_longer_holds_is_allocated_elsewhere_one_by_one(
    db: Engine, tenant: tuple[uuid.UUID, uuid.UUID]
) -> None:
    workspace, user = tenant
    with db.begin() as connection:
        planned_host = make_host(connection, gpus=2, name="a-planned")
        other_host = make_host(connection, gpus=8, name="b-other")
        requests = [make_environment(connection, workspace, user, gpus=2) for _ in range(2)]
    with db.begin() as connection:
        # the queue planned both on a host that fits only one of them
        results = allocate_planned(connection, [PlannedAllocation(r, planned_host, "H100") for r in requests])
    assert [results[r.environment_id].host_id for r in requests] == [planned_host, other_host]
    with db.begin() as connection:
        cordon_host(connection, other_host)
        for request in requests:
            release(connection, request.environment_id)
    with db.begin() as connection:  # planned on a host cordoned since: it goes where it still fits
        results = allocate_planned(connection, [PlannedAllocation(requests[0], other_host, "H100")])
    assert results[requests[0].environment_id].host_id == planned_host
    with db.begin() as connection:  # and when nothing fits any more, it waits
        results = allocate_planned(connection, [PlannedAllocation(requests[1], other_host, "H100")])
    assert results[requests[1].environment_id].outcome is AllocationOutcome.NO_CAPACITY


def test_what_accept_declines_holds_nothing_and_the_rest_is_claimed(
    db: Engine, tenant: tuple[uuid.UUID, uuid.UUID]
) -> None:
    workspace, user = tenant
    with db.begin() as connection:
        host = make_host(connection, gpus=4)
        requests = [make_environment(connection, workspace, user, gpus=1) for _ in range(3)]
    declined = requests[1].environment_id
    seen: list[uuid.UUID] = []

    def accept(
        _: Connection, allocated: Sequence[tuple[AllocationRequest, AllocationResult]]
    ) -> set[uuid.UUID]:
        seen.extend(request.environment_id for request, _ in allocated)
        return {request.environment_id for request, _ in allocated} - {declined}

    with db.begin() as connection:
        results = allocate_planned(
            connection, [PlannedAllocation(r, host, "H100") for r in requests], accept=accept
        )
    assert seen == [r.environment_id for r in requests], "accept sees the whole batch at once, in order"
    assert results[declined].outcome is AllocationOutcome.NOT_ALLOCATABLE
    with db.connect() as connection:
        claimed = {env for env, _ in _claims(connection)}
        usage = read_quota(connection, "workspace", workspace)
    assert claimed == {requests[0].environment_id, requests[2].environment_id}
    assert (usage.used_gpus, usage.running_environments) == (2, 2)


def test_refusals_are_as_one_by_one_and_an_environment_planned_twice_is_claimed_once(
    db: Engine, tenant: tuple[uuid.UUID, uuid.UUID]
) -> None:
    workspace, user = tenant
    with db.begin() as connection:
        host = make_host(connection, gpus=8)
        stopped, twice, already = (make_environment(connection, workspace, user, gpus=1) for _ in range(3))
        set_desired_state(connection, stopped.environment_id, DesiredState.STOPPED)
    with db.begin() as connection:
        allocate_planned(connection, [PlannedAllocation(already, host, "H100")])
    with db.begin() as connection:
        results = allocate_planned(
            connection,
            [PlannedAllocation(r, host, "H100") for r in (stopped, twice, twice, already)],
        )
    assert results[stopped.environment_id].outcome is AllocationOutcome.NOT_ALLOCATABLE
    assert results[twice.environment_id].outcome is AllocationOutcome.ALLOCATED
    assert results[already.environment_id].outcome is AllocationOutcome.ALREADY_ALLOCATED
    with db.connect() as connection:
        claims = _claims(connection)
    assert sorted(env for env, _ in claims) == sorted([twice.environment_id, already.environment_id])


def test_a_plan_of_the_wrong_gpu_model_is_never_followed(
    db: Engine, tenant: tuple[uuid.UUID, uuid.UUID]
) -> None:
    workspace, user = tenant
    with db.begin() as connection:
        a100_host = make_host(connection, gpus=8, model="A100")
        h100_host = make_host(connection, gpus=8, model="H100")
        request = make_environment(connection, workspace, user, gpus=2, model="H100")
    with db.begin() as connection:
        results = allocate_planned(connection, [PlannedAllocation(request, a100_host, "A100")])
    result = results[request.environment_id]
    assert (result.host_id, result.gpu_model) == (h100_host, "H100")


def test_a_plan_on_a_host_another_transaction_holds_goes_elsewhere(
    db: Engine, tenant: tuple[uuid.UUID, uuid.UUID]
) -> None:
    workspace, user = tenant
    with db.begin() as connection:
        busy_host = make_host(connection, gpus=8, name="a-busy")
        other_host = make_host(connection, gpus=8, name="b-other")
        on_busy, on_other = (make_environment(connection, workspace, user, gpus=2) for _ in range(2))
    with db.begin() as holder:
        try_xact_lock(holder, lock_key(LockNamespace.HOST, busy_host))
        with db.begin() as connection:
            results = allocate_planned(
                connection,
                [
                    PlannedAllocation(on_busy, busy_host, "H100"),
                    PlannedAllocation(on_other, other_host, "H100"),
                ],
            )
    assert [results[r.environment_id].host_id for r in (on_busy, on_other)] == [other_host, other_host]
    with db.connect() as connection:
        claimed = connection.execute(
            text("SELECT host_id, count(*) FROM gpu_claims WHERE released_at IS NULL GROUP BY host_id")
        ).all()
    assert [tuple(row) for row in claimed] == [(other_host, 4)]
