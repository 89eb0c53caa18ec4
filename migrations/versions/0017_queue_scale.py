"""A deep capacity queue: the rows that show a queue position indexed, room on environment pages.

Each scheduling pass rewrites the queue position of every waiting environment whose place moved, and
clears it on those no longer waiting. The partial index finds the latter without reading every
environment; the fill factor leaves room on each page so that those updates (of columns no index
holds) stay on their page (HOT) instead of adding an entry to each of the table's indexes.

Revision ID: 0017
Revises: 0014
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_environments_queued",
        "environments",
        ["id"],
        unique=False,
        postgresql_where=sa.text("queue_position IS NOT NULL"),
    )
    # applies to pages written from now on; existing ones fill up as before
    op.execute("ALTER TABLE environments SET (fillfactor = 80)")


def downgrade() -> None:
    op.execute("ALTER TABLE environments RESET (fillfactor)")
    op.drop_index("ix_environments_queued", table_name="environments")
