"""The capacity queue applied to real rows: placements, positions, reasons, head protection."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from sqlalchemy import Connection, Engine, text

from remotegpu.core.capacity.queue_places import PLACE_JOIN
from remotegpu.core.capacity.release import release
from remotegpu.core.capacity.requests import AllocationRequest, AllocationResult
from remotegpu.core.capacity.scheduling import schedule_waiting
from remotegpu.tests.allocation_world import make_environment, make_host, make_user, make_workspace


def _submit(
    connection: Connection, workspace: uuid.UUID, user: uuid.UUID, gpus: int, minute: int
) -> uuid.UUID:
    request = make_environment(connection, workspace, user, gpus=gpus, model="H100")
    connection.execute(
        text("UPDATE environments SET submitted_at = :at WHERE id = :id"),
        {"at": dt.datetime(2026, 11, 24, 10, minute, tzinfo=dt.UTC), "id": request.environment_id},
    )
    return request.environment_id


def _queue(connection: Connection) -> dict[uuid.UUID, tuple[int | None, str | None]]:
    rows = connection.execute(text(f"SELECT e.id, qp.position, qp.reason FROM environments e {PLACE_JOIN}"))
    return {row.id: (row.position, row.reason) for row in rows}


def test_what_fits_is_allocated_and_the_rest_waits_with_position_and_reason(db: Engine) -> None:
    with db.begin() as connection:
        user = make_user(connection)
        workspace = make_workspace(connection, user)
        make_host(connection, gpus=8)
        first = _submit(connection, workspace, user, 6, 1)
        big = _submit(connection, workspace, user, 8, 2)
        bigger = _submit(connection, workspace, user, 8, 3)
    report = schedule_waiting(db)
    assert set(report.allocated) == {first}
    with db.connect() as connection:
        queue = _queue(connection)
    assert queue[big] == (1, "waiting for 8×H100")
    assert queue[bigger] == (2, "waiting for 8×H100")
    assert queue[first] == (None, None)
    with db.connect() as connection:  # waiting is not failure
        phases = set(
            connection.execute(text("SELECT phase FROM environments WHERE id != :f"), {"f": first}).scalars()
        )
    assert phases == {"admitted"}

    with db.begin() as connection:
        release(connection, first)
        connection.execute(text("UPDATE environments SET phase = 'stopped' WHERE id = :f"), {"f": first})
    report = schedule_waiting(db)
    assert set(report.allocated) == {big}
    with db.connect() as connection:
        assert _queue(connection)[bigger] == (1, "waiting for 8×H100")


def test_backfill_never_takes_the_gpus_the_head_waits_for(db: Engine) -> None:
    with db.begin() as connection:
        user = make_user(connection)
        workspace = make_workspace(connection, user)
        big_host = make_host(connection, gpus=8, name="a-big")
        small_host = make_host(connection, gpus=2, name="b-small")
        on_small = _submit(connection, workspace, user, 2, 0)
        on_big = _submit(connection, workspace, user, 2, 1)
    report = schedule_waiting(db)  # bin-pack: the first fills the small host, the second goes to the big one
    assert (report.allocated[on_small].host_id, report.allocated[on_big].host_id) == (small_host, big_host)
    with db.begin() as connection:
        connection.execute(text("UPDATE environments SET phase = 'running'"))
        head = _submit(connection, workspace, user, 8, 3)
        small = _submit(connection, workspace, user, 2, 4)
    report = schedule_waiting(db)
    assert report.allocated == {}, "the small request would take GPUs of the host the head waits for"
    with db.connect() as connection:
        queue = _queue(connection)
        free_on_big = connection.execute(
            text("SELECT free FROM gpu_pools WHERE host_id = :h"), {"h": big_host}
        ).scalar_one()
    assert queue[head] == (1, "waiting for 8×H100")
    assert queue[small] == (2, "waiting for 2×H100")
    assert free_on_big == 6


def test_on_allocated_runs_in_the_allocation_transaction(db: Engine) -> None:
    with db.begin() as connection:
        user = make_user(connection)
        workspace = make_workspace(connection, user)
        make_host(connection, gpus=8)
        environment = _submit(connection, workspace, user, 1, 1)

    def move_phase(
        connection: Connection, allocated: Sequence[tuple[AllocationRequest, AllocationResult]]
    ) -> set[uuid.UUID]:
        ids = [request.environment_id for request, _ in allocated]
        connection.execute(
            text("UPDATE environments SET phase = 'scheduled' WHERE id = ANY(:ids)"), {"ids": ids}
        )
        return set(ids)

    schedule_waiting(db, on_allocated=move_phase)
    with db.connect() as connection:
        phase = connection.execute(text("SELECT phase FROM environments WHERE id = :e"), {"e": environment})
        assert phase.scalar_one() == "scheduled"
