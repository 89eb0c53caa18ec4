"""What operators ask of the reconciler: who leads, how much work waits, what is stuck or failing.

Read from the database only, so any API replica can answer while the reconciler runs elsewhere.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, text

from remotegpu.core.capacity.queue_places import PLACE_HOLDS, PLACES_SQL
from remotegpu.core.environments.states import ActorKind, Phase, sql_list
from remotegpu.core.platform import clock


@dataclass(frozen=True)
class ReconcilerStatus:
    """A snapshot of the reconciler's world."""

    leaders: list[Any]
    phases: dict[str, int]
    queue_depth: int
    due_now: int
    stuck: list[Any] = field(default_factory=list)
    failing: list[Any] = field(default_factory=list)


_IN_PROGRESS = sql_list(Phase.where(Phase.is_in_progress))
"""Work phases: an environment that stays in one too long is stuck."""
_ENV_COLUMNS = (
    "e.id, e.name, w.name AS workspace, e.phase, e.reason, e.last_error, e.retry_count, e.phase_entered_at"
)


def reconciler_status(
    connection: Connection, *, stuck_after: dt.timedelta, limit: int = 50
) -> ReconcilerStatus:
    """Leaders and epochs per shard, environments per phase, the capacity queue's depth, environments
    retrying or in a work phase for longer than `stuck_after`, and failed ones, with their reasons."""
    now = clock.now()
    leaders = list(
        connection.execute(
            text(
                "SELECT shard, epoch, leader_id, leader_since, heartbeat_at FROM shard_leaders ORDER BY shard"
            )
        )
    )
    phases = {
        str(row.phase): int(row.total)
        for row in connection.execute(
            text("SELECT phase, count(*) AS total FROM environments WHERE deleted_at IS NULL GROUP BY phase")
        )
    }
    counts = connection.execute(
        text(
            f"SELECT (SELECT count(*) FROM environments e JOIN ({PLACES_SQL}) qp ON {PLACE_HOLDS}"
            "         WHERE e.deleted_at IS NULL AND qp.position IS NOT NULL) AS queued,"
            " count(*) FILTER (WHERE seen_desired_version < desired_version"
            "   OR (next_attempt_at IS NOT NULL AND next_attempt_at <= :now)) AS due"
            " FROM environments WHERE deleted_at IS NULL"
        ),
        {"now": now},
    ).one()
    stuck = list(
        connection.execute(
            text(
                f"SELECT {_ENV_COLUMNS} FROM environments e JOIN workspaces w ON w.id = e.workspace_id"
                " WHERE e.deleted_at IS NULL AND (e.retry_count > 0 OR (e.phase IN"
                f" ({_IN_PROGRESS}) AND e.phase_entered_at < :before))"
                " ORDER BY e.phase_entered_at LIMIT :limit"
            ),
            {"before": now - stuck_after, "limit": limit},
        )
    )
    failing = list(
        connection.execute(
            text(
                f"SELECT {_ENV_COLUMNS} FROM environments e JOIN workspaces w ON w.id = e.workspace_id"
                f" WHERE e.deleted_at IS NULL AND e.phase = '{Phase.FAILED}'"
                " ORDER BY e.phase_entered_at DESC LIMIT :limit"
            ),
            {"limit": limit},
        )
    )
    return ReconcilerStatus(leaders, phases, int(counts.queued), int(counts.due), stuck, failing)


@dataclass(frozen=True)
class RecentActivity:
    """What the platform did lately: its newest events and how many the reconciler recorded a minute."""

    events: list[Any]
    reconciler_events_last_minute: int


def recent_activity(connection: Connection, *, limit: int = 20) -> RecentActivity:
    """The newest `limit` events of every environment and host (newest first), with their workspace and
    environment names, and the count of the reconciler's events in the last minute (its work rate).
    For platform administrators: the caller has been checked."""
    rows = list(
        connection.execute(
            text(
                "SELECT ev.seq, ev.created_at, ev.actor_kind, ev.kind, ev.reason, ev.message,"
                " e.id AS environment_id, e.name AS environment, w.name AS workspace, h.name AS host"
                " FROM events ev LEFT JOIN environments e ON e.id = ev.environment_id"
                " LEFT JOIN workspaces w ON w.id = ev.workspace_id LEFT JOIN hosts h ON h.id = ev.host_id"
                " ORDER BY ev.seq DESC LIMIT :limit"
            ),
            {"limit": limit},
        )
    )
    rate = connection.execute(
        text("SELECT count(*) FROM events WHERE actor_kind = :actor AND created_at > :since"),
        {"actor": ActorKind.RECONCILER.value, "since": clock.now() - dt.timedelta(minutes=1)},
    ).scalar_one()
    return RecentActivity(rows, int(rate))
