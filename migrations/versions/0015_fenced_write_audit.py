"""Fenced-write audit: leadership terms, and a writer stamp on every table the reconciler writes.

`leader_terms` keeps each shard's takeovers (epoch, leader, when it began). A `BEFORE INSERT OR UPDATE`
trigger stamps rows with the writing reconciler's shard, epoch and the server's clock, read from the
session setting `remotegpu.writer` that only reconciler connections carry; the trigger does not fire
for other sessions, so an API write keeps the row's previous stamp. The audit then checks that no row
was written at an epoch after a newer epoch of its shard began.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STAMPED_TABLES = (
    "access_endpoints",
    "allocations",
    "billing_intervals",
    "claim_history",
    "environments",
    "events",
    "gpu_claims",
    "gpus",
    "hosts",
    "images",
    "invoices",
    "meters",
    "port_mappings",
)

_STAMP_FUNCTION = """
CREATE FUNCTION stamp_writer() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    writer text := current_setting('remotegpu.writer', true);
BEGIN
    NEW.writer_shard := split_part(writer, ':', 1)::smallint;
    NEW.writer_epoch := split_part(writer, ':', 2)::bigint;
    NEW.written_at := clock_timestamp();
    RETURN NEW;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "leader_terms",
        sa.Column("shard", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("epoch", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("leader_id", sa.String(length=128), nullable=False),
        sa.Column("began_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("shard", "epoch", name=op.f("pk_leader_terms")),
    )
    op.execute(
        "INSERT INTO leader_terms (shard, epoch, leader_id, began_at)"
        " SELECT shard, epoch, coalesce(leader_id, ''), coalesce(leader_since, now())"
        " FROM shard_leaders WHERE epoch > 0"
    )
    op.execute(_STAMP_FUNCTION)
    for table in STAMPED_TABLES:
        op.add_column(table, sa.Column("writer_shard", sa.SmallInteger(), nullable=True))
        op.add_column(table, sa.Column("writer_epoch", sa.BigInteger(), nullable=True))
        op.add_column(table, sa.Column("written_at", sa.DateTime(timezone=True), nullable=True))
        op.execute(
            f"CREATE TRIGGER stamp_writer BEFORE INSERT OR UPDATE ON {table} FOR EACH ROW"
            " WHEN (current_setting('remotegpu.writer', true) <> '') EXECUTE FUNCTION stamp_writer()"
        )


def downgrade() -> None:
    for table in STAMPED_TABLES:
        op.execute(f"DROP TRIGGER stamp_writer ON {table}")
        op.drop_column(table, "written_at")
        op.drop_column(table, "writer_epoch")
        op.drop_column(table, "writer_shard")
    op.execute("DROP FUNCTION stamp_writer()")
    op.drop_table("leader_terms")
