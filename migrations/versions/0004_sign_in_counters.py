"""Sign-in rate limit counters in the database, so the limits hold across API workers and replicas
(they were kept in each process's memory: two workers let twice the limit through).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sign_in_counters",
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.CheckConstraint("scope IN ('address', 'account')", name=op.f("ck_sign_in_counters_scope_known")),
        sa.CheckConstraint(
            "attempts >= 1 AND window_end > window_start", name=op.f("ck_sign_in_counters_window_valid")
        ),
        sa.PrimaryKeyConstraint("scope", "key", name=op.f("pk_sign_in_counters")),
    )
    op.create_index(op.f("ix_sign_in_counters_window_end"), "sign_in_counters", ["window_end"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_sign_in_counters_window_end"), table_name="sign_in_counters")
    op.drop_table("sign_in_counters")
