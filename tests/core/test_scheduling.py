"""The capacity queue applied to real rows: placements, positions, reasons, head protection."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from sqlalchemy import Connection, Engine, text

from remotegpu.core.capacity.queue_places import PLACE_JOIN
from remotegpu.core.capacity.quotas import QuotaLimits, set_quota
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


def test_held_and_over_quota_environments_wait_without_a_place_and_with_their_reason(db: Engine) -> None:
    with db.begin() as connection:
        user = make_user(connection)
        held_user = make_user(connection)
        workspace = make_workspace(connection, user)
        held_workspace = make_workspace(connection, held_user)
        make_host(connection, gpus=8)
        set_quota(connection, "workspace", workspace, QuotaLimits(max_gpus=2))
        fits = _submit(connection, workspace, user, 2, 1)
        over = _submit(connection, workspace, user, 2, 2)  # the plan places it; the quota refuses it
        held = _submit(connection, held_workspace, held_user, 1, 0)
        too_big = _submit(connection, workspace, user, 16, 3)

    def spent(connection: Connection, workspaces: set[uuid.UUID]) -> dict[uuid.UUID, str]:
        assert all(isinstance(w, uuid.UUID) for w in workspaces)
        return {held_workspace: "budget exhausted"} if held_workspace in workspaces else {}

    report = schedule_waiting(db, hold=spent)
    assert set(report.allocated) == {fits}
    with db.connect() as connection:
        queue = _queue(connection)
    assert queue[held] == (None, "budget exhausted")
    assert queue[over] == (None, "workspace quota on GPUs: 2 of 2 in use, 2 requested, over by 2")
    assert queue[too_big] == (1, "no host can ever fit 16×H100")
    assert queue[fits] == (None, None)
    assert {(uuid.UUID(key), position, reason) for key, _, position, reason in report.queue} == {
        (key, *place) for key, place in queue.items() if place != (None, None)
    }


def test_a_second_pass_over_an_unchanged_queue_writes_no_bucket(db: Engine) -> None:
    with db.begin() as connection:
        user = make_user(connection)
        workspace = make_workspace(connection, user)
        make_host(connection, gpus=8)
        waiting = [_submit(connection, workspace, user, 8, minute % 60) for minute in range(1, 301)]
        connection.execute(
            text("UPDATE environments SET phase = 'running' WHERE id = :id"), {"id": waiting[0]}
        )
    schedule_waiting(db)

    def published() -> dict[int, dt.datetime]:
        with db.connect() as connection:
            return dict(connection.execute(text("SELECT bucket, published_at FROM queue_buckets")).all())

    before = published()
    with db.begin() as connection:  # the read has no order: rewrite the table in another one
        connection.execute(text("CLUSTER environments USING pk_environments"))
    schedule_waiting(db)
    assert published() == before


def test_fair_share_counts_the_gpus_a_workspace_already_runs(db: Engine) -> None:
    with db.begin() as connection:
        busy_user, idle_user = make_user(connection), make_user(connection)
        busy, idle = make_workspace(connection, busy_user), make_workspace(connection, idle_user)
        make_host(connection, gpus=5)
        running = _submit(connection, busy, busy_user, 4, 0)
    assert set(schedule_waiting(db).allocated) == {running}
    with db.begin() as connection:
        connection.execute(text("UPDATE environments SET phase = 'running' WHERE id = :id"), {"id": running})
        older = _submit(connection, busy, busy_user, 1, 1)  # submitted first, but its workspace runs 4 GPUs
        newer = _submit(connection, idle, idle_user, 1, 2)
    assert set(schedule_waiting(db).allocated) == {newer}
    with db.connect() as connection:
        assert _queue(connection)[older] == (1, "waiting for 1×H100")
