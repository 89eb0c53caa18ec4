"""An environment's active GPU claims found through an index of their own.

A release (and the read of the hosts it must lock) asks for one environment's GPU claims that are not
released, on the hosts it locked. The only index whose predicate is "not released" was the unique one
on the GPU, so the planner read every active claim of the cluster through it, or the environment's
whole claim history through the plain index on the environment, and intersected that with the host's
history: a release's cost grew with the GPUs in use and with time. This partial index on (environment,
host) answers the question directly, as the allocations' and port mappings' own do.

Revision ID: 0020
Revises: 0017
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_gpu_claims_environment_id_active",
        "gpu_claims",
        ["environment_id", "host_id"],
        unique=False,
        postgresql_where=sa.text("released_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_gpu_claims_environment_id_active", table_name="gpu_claims")
