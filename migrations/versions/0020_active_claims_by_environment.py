"""A release and a claim write that cost the same however long the cluster has run.

An environment's active GPU claims are found through an index of their own:
A release (and the read of the hosts it must lock) asks for one environment's GPU claims that are not
released, on the hosts it locked. The only index whose predicate is "not released" was the unique one
on the GPU, so the planner read every active claim of the cluster through it, or the environment's
whole claim history through the plain index on the environment, and intersected that with the host's
history: a release's cost grew with the GPUs in use and with time. This partial index on (environment,
host) answers the question directly, as the allocations' and port mappings' own do.

The claim history drops its five foreign keys. Every history row is written by the statement that writes
(or releases) the claim it records, from rows those same statements just checked (the allocation's
environment, workspace, user and host; the claim's GPU), so the keys checked nothing new; they cost five
key lookups per row, a claim of 8 GPUs and 2 ports ten rows on claim and ten on release (a tenth of both
statements' time), and they would forbid ever removing a row the append-only log once named.

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | Sequence[str] | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_HISTORY_KEYS = {
    "environment_id": "environments",
    "workspace_id": "workspaces",
    "user_id": "users",
    "host_id": "hosts",
    "gpu_id": "gpus",
}


def upgrade() -> None:
    for column, table in _HISTORY_KEYS.items():
        op.drop_constraint(f"fk_claim_history_{column}_{table}", "claim_history", type_="foreignkey")
    op.create_index(
        "ix_gpu_claims_environment_id_active",
        "gpu_claims",
        ["environment_id", "host_id"],
        unique=False,
        postgresql_where=sa.text("released_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_gpu_claims_environment_id_active", table_name="gpu_claims")
    for column, table in _HISTORY_KEYS.items():
        op.create_foreign_key(
            f"fk_claim_history_{column}_{table}",
            "claim_history",
            table,
            [column],
            ["id"],
            ondelete="RESTRICT",
        )
