"""A deep capacity queue: the rows that show a queue place indexed, room on environment pages.

Each scheduling pass rewrites the queue position of every waiting environment whose place moved, and
clears position and reason on those no longer waiting. The partial index finds the latter without
reading every environment; its predicate names the reason, which a pass seldom changes, not the
position, which it rewrites: an update of a column an index mentions cannot stay on its page. The fill
factor leaves room on each page, so those updates stay there (HOT) instead of adding an entry to each
of the table's indexes.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_environments_queued",
        "environments",
        ["id"],
        unique=False,
        postgresql_where=sa.text("queue_reason IS NOT NULL"),
    )
    # applies to pages written from now on; existing ones fill up as before
    op.execute("ALTER TABLE environments SET (fillfactor = 80)")


def downgrade() -> None:
    op.execute("ALTER TABLE environments RESET (fillfactor)")
    op.drop_index("ix_environments_queued", table_name="environments")
