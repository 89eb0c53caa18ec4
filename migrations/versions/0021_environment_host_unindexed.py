"""Allocation and release update an environment's row in place (HOT).

Both write the environment's `host_id` (with `allocated_at` and the storage it holds), and `host_id` was
indexed, so each of those updates wrote a new entry into every one of the table's eleven indexes. The
one reader that looked environments up by host (draining a host) now finds them through the active
allocations, which carry the host and are indexed by it; with no index on the column, the row's update
stays on its page (the table's fill factor leaves room) and touches no index.

Revision ID: 0021
Revises: 0020
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0021"
down_revision: str | Sequence[str] | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_environments_host_id", table_name="environments")


def downgrade() -> None:
    op.create_index("ix_environments_host_id", "environments", ["host_id"], unique=False)
