"""Leases read partial indexes: one per way an environment is due (a user's change, work with a phase
to move, the resync of a settled running one), each ordered by when it is due.

A lease used to read every row of its shard: its ways to be due were one OR, and one of them compares
two columns (`desired_version <> seen_desired_version`), which no plain index answers. Each partial
index's predicate is one class of `core.environments.due` (copied here as it was written then, so this
migration does not change when that module does); the lease takes each class by a limited scan of its
index, whatever the planner's statistics. The classes are disjoint, so a row is in at most one of
them, and the index on (shard, next_attempt_at) they replace is dropped: an update still adds as many
index entries as before.

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | Sequence[str] | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DUE_AT = "coalesce(next_attempt_at, '-infinity')"
_SETTLED = (
    "phase <> 'deleted'"
    " AND NOT (phase = 'stopped' AND desired_state = 'stopped')"
    " AND NOT (phase = 'failed' AND desired_state <> 'deleted' AND generation = observed_generation)"
    " AND NOT (phase IN ('pending') AND desired_state = 'running')"
)
_SETTLED_RUNNING = "phase = 'running' AND desired_state = 'running' AND generation = observed_generation"
_PREDICATES = {
    "ix_environments_due_changed": f"desired_version <> seen_desired_version AND {_SETTLED}",
    "ix_environments_due_work": (
        f"desired_version = seen_desired_version AND {_SETTLED}"
        " AND NOT (phase IN ('admitted') AND desired_state = 'running' AND generation = observed_generation)"
        f" AND NOT ({_SETTLED_RUNNING})"
    ),
    "ix_environments_due_resync": f"desired_version = seen_desired_version AND {_SETTLED_RUNNING}",
}


def upgrade() -> None:
    for name, predicate in _PREDICATES.items():
        op.create_index(
            name,
            "environments",
            ["shard", sa.text(_DUE_AT)],
            unique=False,
            postgresql_where=sa.text(predicate),
        )
    op.drop_index("ix_environments_shard_next_attempt_at", table_name="environments")


def downgrade() -> None:
    op.create_index(
        "ix_environments_shard_next_attempt_at", "environments", ["shard", "next_attempt_at"], unique=False
    )
    for name in reversed(list(_PREDICATES)):
        op.drop_index(name, table_name="environments")
