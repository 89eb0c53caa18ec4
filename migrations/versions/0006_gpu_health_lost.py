"""GPU health `lost`: a GPU the node no longer reports leaves the pool (the inventory sync never shrank
a host whose GPU count dropped).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint(op.f("ck_gpus_health"), "gpus", type_="check")
    op.create_check_constraint(op.f("ck_gpus_health"), "gpus", "health IN ('healthy', 'unhealthy', 'lost')")


def downgrade() -> None:
    op.execute("UPDATE gpus SET health = 'unhealthy' WHERE health = 'lost'")
    op.drop_constraint(op.f("ck_gpus_health"), "gpus", type_="check")
    op.create_check_constraint(op.f("ck_gpus_health"), "gpus", "health IN ('healthy', 'unhealthy')")
