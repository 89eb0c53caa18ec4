"""Storage quota held by an environment's volumes until its delete (a stop released it, though the
volumes persist).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "environments", sa.Column("storage_bytes_held", sa.BigInteger(), server_default="0", nullable=False)
    )
    op.create_check_constraint(
        op.f("ck_environments_storage_held_not_negative"), "environments", "storage_bytes_held >= 0"
    )
    # The quotas counted storage only while an allocation was active: carry exactly that over, so the
    # counters stay equal to what the environments hold.
    op.execute(
        "UPDATE environments e SET storage_bytes_held = a.storage_bytes"
        " FROM allocations a WHERE a.environment_id = e.id AND a.released_at IS NULL"
    )


def downgrade() -> None:
    # Back to counting storage per active allocation only.
    op.execute(
        "UPDATE resource_quotas q SET used_storage_bytes = coalesce((SELECT sum(a.storage_bytes)"
        " FROM allocations a WHERE a.released_at IS NULL"
        " AND (a.workspace_id = q.workspace_id OR a.user_id = q.user_id)), 0)"
    )
    op.drop_constraint(op.f("ck_environments_storage_held_not_negative"), "environments", type_="check")
    op.drop_column("environments", "storage_bytes_held")
