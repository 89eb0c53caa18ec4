"""Metering: prices with effective-from times, meters (one per resource per observed spell, with its
cursor), and billing intervals for every resource (GPU, CPU, memory, storage).

Nothing wrote billing intervals before this revision, so the new NOT NULL columns need no backfill.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "prices",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column(
            "resource",
            sa.Enum(
                "gpu",
                "cpu",
                "memory",
                "storage",
                name="resource",
                native_enum=False,
                create_constraint=True,
                length=15,
            ),
            nullable=False,
        ),
        sa.Column("gpu_model", sa.String(length=64), nullable=True),
        sa.Column("unit_price", sa.Numeric(precision=18, scale=6), nullable=False),
        sa.Column("effective_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "(resource = 'gpu') = (gpu_model IS NOT NULL)", name=op.f("ck_prices_model_only_for_gpu")
        ),
        sa.CheckConstraint("unit_price >= 0", name=op.f("ck_prices_not_negative")),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_prices_created_by_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prices")),
    )
    op.create_index(
        "uq_prices_resource_model_effective_from",
        "prices",
        ["resource", sa.literal_column("coalesce(gpu_model, '')"), "effective_from"],
        unique=True,
    )
    op.create_table(
        "meters",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("environment_id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column(
            "resource",
            sa.Enum(
                "gpu",
                "cpu",
                "memory",
                "storage",
                name="resource",
                native_enum=False,
                create_constraint=True,
                length=15,
            ),
            nullable=False,
        ),
        sa.Column("subject", sa.String(length=64), server_default="", nullable=False),
        sa.Column("gpu_model", sa.String(length=64), nullable=True),
        sa.Column("quantity", sa.Numeric(precision=18, scale=6), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("metered_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("amount", sa.Numeric(precision=24, scale=12), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "(resource = 'gpu') = (gpu_model IS NOT NULL)", name=op.f("ck_meters_model_only_for_gpu")
        ),
        sa.CheckConstraint(
            "ended_at IS NULL OR metered_until <= ended_at", name=op.f("ck_meters_cursor_before_end")
        ),
        sa.CheckConstraint("metered_until >= started_at", name=op.f("ck_meters_cursor_after_start")),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_meters_positive_quantity")),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_meters_environment_id_environments"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_meters_user_id_users"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_meters_workspace_id_workspaces"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meters")),
        sa.UniqueConstraint(
            "environment_id",
            "resource",
            "subject",
            "started_at",
            name=op.f("uq_meters_environment_id_resource_subject_started_at"),
        ),
    )
    op.create_index(
        "ix_meters_due",
        "meters",
        ["metered_until"],
        unique=False,
        postgresql_where=sa.text("ended_at IS NULL OR metered_until < ended_at"),
    )
    op.add_column("billing_intervals", sa.Column("meter_id", sa.Uuid(), nullable=False))
    op.add_column(
        "billing_intervals",
        sa.Column(
            "resource",
            sa.Enum(
                "gpu",
                "cpu",
                "memory",
                "storage",
                name="resource",
                native_enum=False,
                create_constraint=True,
                length=15,
            ),
            nullable=False,
        ),
    )
    op.add_column(
        "billing_intervals", sa.Column("subject", sa.String(length=64), server_default="", nullable=False)
    )
    op.add_column(
        "billing_intervals", sa.Column("quantity", sa.Numeric(precision=18, scale=6), nullable=False)
    )
    op.add_column("billing_intervals", sa.Column("unit", sa.String(length=16), nullable=False))
    op.alter_column("billing_intervals", "gpu_model", existing_type=sa.VARCHAR(length=64), nullable=True)
    op.alter_column(
        "billing_intervals",
        "amount",
        existing_type=sa.NUMERIC(precision=18, scale=6),
        type_=sa.Numeric(precision=24, scale=12),
        existing_nullable=False,
    )
    op.drop_constraint(
        op.f("uq_billing_intervals_environment_id_started_at"), "billing_intervals", type_="unique"
    )
    op.create_index(
        "ix_billing_intervals_environment_id_started_at",
        "billing_intervals",
        ["environment_id", "started_at"],
        unique=False,
    )
    op.create_unique_constraint(
        op.f("uq_billing_intervals_meter_id_started_at"), "billing_intervals", ["meter_id", "started_at"]
    )
    op.create_foreign_key(
        op.f("fk_billing_intervals_meter_id_meters"),
        "billing_intervals",
        "meters",
        ["meter_id"],
        ["id"],
        ondelete="RESTRICT",
    )
    op.drop_column("billing_intervals", "gpu_count")  # its CHECK constraint goes with it
    op.create_check_constraint(
        op.f("ck_billing_intervals_not_negative"),
        "billing_intervals",
        "quantity > 0 AND unit_price >= 0 AND amount >= 0",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_billing_intervals_not_negative"), "billing_intervals", type_="check")
    op.add_column(
        "billing_intervals", sa.Column("gpu_count", sa.INTEGER(), autoincrement=False, nullable=False)
    )
    op.create_check_constraint(
        op.f("ck_billing_intervals_not_negative"),
        "billing_intervals",
        "gpu_count >= 0 AND unit_price >= 0 AND amount >= 0",
    )
    op.drop_constraint(op.f("fk_billing_intervals_meter_id_meters"), "billing_intervals", type_="foreignkey")
    op.drop_constraint(op.f("uq_billing_intervals_meter_id_started_at"), "billing_intervals", type_="unique")
    op.drop_index("ix_billing_intervals_environment_id_started_at", table_name="billing_intervals")
    op.create_unique_constraint(
        op.f("uq_billing_intervals_environment_id_started_at"),
        "billing_intervals",
        ["environment_id", "started_at"],
        postgresql_nulls_not_distinct=False,
    )
    op.alter_column(
        "billing_intervals",
        "amount",
        existing_type=sa.Numeric(precision=24, scale=12),
        type_=sa.NUMERIC(precision=18, scale=6),
        existing_nullable=False,
    )
    op.alter_column("billing_intervals", "gpu_model", existing_type=sa.VARCHAR(length=64), nullable=False)
    op.drop_column("billing_intervals", "unit")
    op.drop_column("billing_intervals", "quantity")
    op.drop_column("billing_intervals", "subject")
    op.drop_column("billing_intervals", "resource")
    op.drop_column("billing_intervals", "meter_id")
    op.drop_index(
        "ix_meters_due",
        table_name="meters",
        postgresql_where=sa.text("ended_at IS NULL OR metered_until < ended_at"),
    )
    op.drop_table("meters")
    op.drop_index("uq_prices_resource_model_effective_from", table_name="prices")
    op.drop_table("prices")
