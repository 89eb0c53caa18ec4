"""The capacity queue published once per pass in 256 narrow rows, instead of a position on every
waiting environment.

When the head of the queue moves, every waiting environment's position moves with it: with 5,000
waiting, each pass rewrote 5,000 environment rows (most of a pass). The pass now rewrites the 256 rows
of `queue_buckets` (an environment's bucket is the last byte of its id; each holds its entries' ids,
the phase entry the pass saw, positions and reasons as parallel arrays), and readers derive an
environment's place from its bucket. Like every table the reconciler writes, it carries the writer
stamp (migration 0015). The old columns' places are carried over, and back on downgrade.

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "queue_buckets",
        sa.Column("bucket", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("environment_ids", postgresql.ARRAY(sa.Uuid()), nullable=False),
        sa.Column("entered_at", postgresql.ARRAY(sa.DateTime(timezone=True)), nullable=False),
        sa.Column("positions", postgresql.ARRAY(sa.Integer()), nullable=False),
        sa.Column("reasons", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("writer_shard", sa.SmallInteger(), nullable=True),
        sa.Column("writer_epoch", sa.BigInteger(), nullable=True),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("bucket BETWEEN 0 AND 255", name=op.f("ck_queue_buckets_bucket_range")),
        sa.CheckConstraint(
            "cardinality(entered_at) = cardinality(environment_ids)"
            " AND cardinality(positions) = cardinality(environment_ids)"
            " AND cardinality(reasons) = cardinality(environment_ids)",
            name=op.f("ck_queue_buckets_arrays_aligned"),
        ),
        sa.PrimaryKeyConstraint("bucket", name=op.f("pk_queue_buckets")),
    )
    op.execute(
        "CREATE TRIGGER stamp_writer BEFORE INSERT OR UPDATE ON queue_buckets FOR EACH ROW"
        " WHEN (current_setting('remotegpu.writer', true) <> '') EXECUTE FUNCTION stamp_writer()"
    )
    op.execute(
        """
        INSERT INTO queue_buckets (bucket, environment_ids, entered_at, positions, reasons, published_at)
        SELECT get_byte(uuid_send(id), 15),
               array_agg(id ORDER BY queue_position NULLS LAST, id),
               array_agg(phase_entered_at ORDER BY queue_position NULLS LAST, id),
               array_agg(queue_position ORDER BY queue_position NULLS LAST, id),
               array_agg(queue_reason ORDER BY queue_position NULLS LAST, id), now()
          FROM environments WHERE queue_reason IS NOT NULL
         GROUP BY 1
        """
    )
    op.drop_index("ix_environments_queued", table_name="environments")
    op.drop_column("environments", "queue_reason")
    op.drop_column("environments", "queue_position")


def downgrade() -> None:
    op.add_column("environments", sa.Column("queue_position", sa.Integer(), nullable=True))
    op.add_column("environments", sa.Column("queue_reason", sa.Text(), nullable=True))
    op.execute(
        """
        UPDATE environments e SET queue_position = u.position, queue_reason = u.reason
          FROM queue_buckets q, unnest(q.environment_ids, q.entered_at, q.positions, q.reasons)
               AS u(environment_id, entered_at, position, reason)
         WHERE e.id = u.environment_id AND e.phase_entered_at = u.entered_at
        """
    )
    op.create_index(
        "ix_environments_queued",
        "environments",
        ["id"],
        unique=False,
        postgresql_where=sa.text("queue_reason IS NOT NULL"),
    )
    op.execute("DROP TRIGGER stamp_writer ON queue_buckets")
    op.drop_table("queue_buckets")
