"""Datasets: workspace-owned data (uploads, S3 prefixes, existing volumes) whose declared size counts
against the workspace's storage quota; home volumes (one per user per workspace), whose storage meters
and billing intervals belong to no environment.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column(
            "source",
            sa.Enum(
                "upload", "s3", "volume", name="source", native_enum=False, create_constraint=True, length=14
            ),
            nullable=False,
        ),
        sa.Column(
            "storage",
            sa.Enum("local", "s3", name="storage", native_enum=False, create_constraint=True, length=13),
            nullable=True,
        ),
        sa.Column("source_url", sa.Text(), nullable=True),
        sa.Column("volume", sa.String(length=253), nullable=True),
        sa.Column("file_name", sa.String(length=255), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("checksum", sa.String(length=80), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "uploading",
                "ready",
                "failed",
                name="status",
                native_enum=False,
                create_constraint=True,
                length=17,
            ),
            nullable=False,
        ),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("retryable", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("received_bytes", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("upload_id", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("ready_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "name ~ '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$'", name=op.f("ck_datasets_name_dns_label")
        ),
        sa.CheckConstraint(
            "size_bytes >= 0 AND received_bytes >= 0 AND received_bytes <= size_bytes",
            name=op.f("ck_datasets_sizes"),
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_datasets_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_datasets_created_by_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
        sa.UniqueConstraint("workspace_id", "name", name=op.f("uq_datasets_workspace_id_name")),
    )

    op.create_table(
        "home_volumes",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_home_volumes_workspace_id_workspaces"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_home_volumes_user_id_users"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_home_volumes")),
        sa.UniqueConstraint("workspace_id", "user_id", name=op.f("uq_home_volumes_workspace_id_user_id")),
    )
    for table in ("meters", "billing_intervals"):
        op.alter_column(table, "environment_id", existing_type=sa.Uuid(), nullable=True)
        op.add_column(table, sa.Column("home_volume_id", sa.Uuid(), nullable=True))
        op.create_foreign_key(
            op.f(f"fk_{table}_home_volume_id_home_volumes"),
            table,
            "home_volumes",
            ["home_volume_id"],
            ["id"],
            ondelete="RESTRICT",
        )
    op.create_check_constraint(
        op.f("ck_meters_one_owner"), "meters", "num_nonnulls(environment_id, home_volume_id) = 1"
    )
    op.create_index(
        "uq_meters_home_volume_id_started_at",
        "meters",
        ["home_volume_id", "started_at"],
        unique=True,
        postgresql_where=sa.text("home_volume_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_meters_home_volume_id_started_at", table_name="meters")
    op.drop_constraint(op.f("ck_meters_one_owner"), "meters", type_="check")
    for table in ("meters", "billing_intervals"):
        op.drop_constraint(op.f(f"fk_{table}_home_volume_id_home_volumes"), table, type_="foreignkey")
        op.drop_column(table, "home_volume_id")
        op.alter_column(table, "environment_id", existing_type=sa.Uuid(), nullable=False)
    op.drop_table("home_volumes")
    op.drop_table("datasets")
