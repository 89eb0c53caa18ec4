"""The published capacity queue: a place holds while its environment still waits where the pass saw it,
and a statement over every entry (counts) and one over a few environments (lists, one environment)
find the same places."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping

from sqlalchemy import Connection, Engine, text

from remotegpu.core.capacity.queue_places import BUCKETS, PLACE_HOLDS, PLACE_JOIN, PLACES_SQL, publish_queue
from remotegpu.tests.allocation_world import make_environment

AT = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)


def _waiting(connection: Connection, tenant: tuple[uuid.UUID, uuid.UUID], count: int) -> list[uuid.UUID]:
    workspace, user = tenant
    return [make_environment(connection, workspace, user, gpus=8).environment_id for _ in range(count)]


def _entered(connection: Connection, ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    rows = connection.execute(
        text("SELECT id, CAST(phase_entered_at AS text) AS entered FROM environments WHERE id = ANY(:ids)"),
        {"ids": ids},
    )
    return {row.id: row.entered for row in rows}


def _publish(
    connection: Connection, places: Mapping[uuid.UUID, tuple[int | None, str]], entered: dict[uuid.UUID, str]
) -> None:
    publish_queue(connection, [(str(key), entered[key], *place) for key, place in places.items()], AT)


def _listed(connection: Connection) -> dict[uuid.UUID, tuple[int | None, str | None]]:
    rows = connection.execute(
        text(
            f"SELECT e.id, qp.position, qp.reason FROM environments e LEFT JOIN ({PLACES_SQL}) qp ON {PLACE_HOLDS}"
        )
    )
    return {row.id: (row.position, row.reason) for row in rows}


def _one(connection: Connection, environment_id: uuid.UUID) -> tuple[int | None, str | None]:
    row = connection.execute(
        text(f"SELECT qp.position, qp.reason FROM environments e {PLACE_JOIN} WHERE e.id = :id"),
        {"id": environment_id},
    ).one()
    return (row.position, row.reason)


def test_lists_and_single_reads_show_the_published_places(
    db: Engine, tenant: tuple[uuid.UUID, uuid.UUID]
) -> None:
    with db.begin() as connection:
        first, second, third, unlisted = _waiting(connection, tenant, 4)
        places = {
            first: (1, "waiting for 8×H100"),
            second: (2, "waiting for 8×H100"),
            third: (None, "over quota: gpus, cpu"),
        }
        _publish(connection, places, _entered(connection, [first, second, third]))
    with db.connect() as connection:
        assert _listed(connection) == {**places, unlisted: (None, None)}
        assert {key: _one(connection, key) for key in (first, second, third, unlisted)} == {
            **places,
            unlisted: (None, None),
        }


def test_the_next_pass_replaces_every_place_when_the_head_moves(
    db: Engine, tenant: tuple[uuid.UUID, uuid.UUID]
) -> None:
    with db.begin() as connection:
        head, second, third = _waiting(connection, tenant, 3)
        entered = _entered(connection, [head, second, third])
        _publish(connection, {head: (1, "w"), second: (2, "w"), third: (3, "w")}, entered)
        connection.execute(text("UPDATE environments SET phase = 'scheduled' WHERE id = :id"), {"id": head})
    with db.connect() as connection:  # placed: its place is gone at once, the others move at the next pass
        assert _listed(connection) == {head: (None, None), second: (2, "w"), third: (3, "w")}
        assert _one(connection, head) == (None, None)
    with db.begin() as connection:
        _publish(connection, {second: (1, "w"), third: (2, "w")}, entered)
    with db.connect() as connection:
        assert _listed(connection) == {head: (None, None), second: (1, "w"), third: (2, "w")}
        assert (_one(connection, second), _one(connection, third)) == ((1, "w"), (2, "w"))


def test_a_place_no_longer_holds_once_its_environment_leaves_the_phase_the_pass_saw(
    db: Engine, tenant: tuple[uuid.UUID, uuid.UUID]
) -> None:
    with db.begin() as connection:
        stopped, requeued, waits = _waiting(connection, tenant, 3)
        places = {stopped: (1, "w"), requeued: (2, "w"), waits: (3, "w")}
        _publish(connection, places, _entered(connection, list(places)))
        connection.execute(
            text("UPDATE environments SET desired_state = 'stopped' WHERE id = :id"), {"id": stopped}
        )
        connection.execute(  # placed, lost its host and back in the queue: a new phase entry
            text(
                "UPDATE environments SET phase_entered_at = phase_entered_at + interval '1 second' WHERE id = :id"
            ),
            {"id": requeued},
        )
    with db.connect() as connection:
        assert _listed(connection) == {stopped: (None, None), requeued: (None, None), waits: (3, "w")}
        assert [_one(connection, key) for key in (stopped, requeued, waits)] == [
            (None, None),
            (None, None),
            (3, "w"),
        ]


def test_a_queue_of_one_without_a_position_and_an_empty_queue_are_published(
    db: Engine, tenant: tuple[uuid.UUID, uuid.UUID]
) -> None:
    with db.begin() as connection:
        (only,) = _waiting(connection, tenant, 1)
        _publish(connection, {only: (None, "budget exhausted")}, _entered(connection, [only]))
    with db.connect() as connection:
        assert _one(connection, only) == (None, "budget exhausted")
    with db.begin() as connection:
        publish_queue(connection, [], AT)
    with db.connect() as connection:
        assert _one(connection, only) == (None, None)
        assert (
            connection.execute(
                text("SELECT count(*) FROM queue_buckets WHERE cardinality(environment_ids) = 0")
            ).scalar_one()
            == BUCKETS
        )


def test_a_queue_that_did_not_move_is_not_written_again(
    db: Engine, tenant: tuple[uuid.UUID, uuid.UUID]
) -> None:
    def published_at(at: dt.datetime) -> int:
        with db.connect() as connection:
            return int(
                connection.execute(
                    text("SELECT count(*) FROM queue_buckets WHERE published_at = :at"), {"at": at}
                ).scalar_one()
            )

    with db.begin() as connection:
        first, second = _waiting(connection, tenant, 2)
        entered = _entered(connection, [first, second])
        entries = [(str(first), entered[first], 1, "w"), (str(second), entered[second], 2, "w")]
        publish_queue(connection, entries, AT)
    assert published_at(AT) == BUCKETS
    later = AT + dt.timedelta(seconds=1)
    with db.begin() as connection:
        publish_queue(connection, entries, later)
    assert published_at(later) == 0
    with db.begin() as connection:  # only the buckets of the two whose places changed are written
        publish_queue(connection, [(str(second), entered[second], 1, "w")], later)
    assert published_at(later) == (1 if first.bytes[15] == second.bytes[15] else 2)
