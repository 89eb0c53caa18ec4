"""Invoices for every resource: invoice lines get a resource, a unit and a quantity in it (GPU-hours
became one case of it), an optional GPU model, and the period an adjustment line bills late usage of;
billing intervals not yet on a finalized invoice get a partial index (the invoice job and drafts read
them).

Nothing but tests wrote invoice lines before this revision; any existing line was GPU-hours, and is
kept as such.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RESOURCE = sa.Enum(
    "gpu", "cpu", "memory", "storage", name="resource", native_enum=False, create_constraint=True, length=15
)


def upgrade() -> None:
    op.drop_constraint(op.f("ck_invoice_lines_not_negative"), "invoice_lines", type_="check")
    op.alter_column("invoice_lines", "gpu_hours", new_column_name="quantity")
    op.alter_column("invoice_lines", "gpu_model", existing_type=sa.VARCHAR(length=64), nullable=True)
    op.add_column("invoice_lines", sa.Column("resource", _RESOURCE, nullable=True))
    op.add_column("invoice_lines", sa.Column("unit", sa.String(length=16), nullable=True))
    op.add_column(
        "invoice_lines", sa.Column("adjusts_period_start", sa.DateTime(timezone=True), nullable=True)
    )
    op.execute("UPDATE invoice_lines SET resource = 'gpu', unit = 'gpu_hour'")
    op.alter_column("invoice_lines", "resource", existing_type=_RESOURCE, nullable=False)
    op.alter_column("invoice_lines", "unit", existing_type=sa.String(length=16), nullable=False)
    op.create_check_constraint(
        op.f("ck_invoice_lines_not_negative"), "invoice_lines", "quantity >= 0 AND amount >= 0"
    )
    op.create_check_constraint(
        op.f("ck_invoice_lines_model_only_for_gpu"),
        "invoice_lines",
        "(resource = 'gpu') = (gpu_model IS NOT NULL)",
    )
    op.create_index(
        "ix_billing_intervals_uninvoiced",
        "billing_intervals",
        ["started_at", "workspace_id"],
        unique=False,
        postgresql_where=sa.text("invoice_id IS NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_billing_intervals_uninvoiced",
        table_name="billing_intervals",
        postgresql_where=sa.text("invoice_id IS NULL"),
    )
    # Lines of other resources cannot be GPU-hours; a finalized one is immutable (the trigger refuses
    # to delete it), so a downgrade past this revision needs such invoices to be removed by hand first.
    op.execute("DELETE FROM invoice_lines WHERE resource <> 'gpu'")
    op.drop_constraint(op.f("ck_invoice_lines_model_only_for_gpu"), "invoice_lines", type_="check")
    op.drop_constraint(op.f("ck_invoice_lines_not_negative"), "invoice_lines", type_="check")
    op.drop_column("invoice_lines", "adjusts_period_start")
    op.drop_column("invoice_lines", "unit")
    op.drop_column("invoice_lines", "resource")
    op.alter_column("invoice_lines", "gpu_model", existing_type=sa.VARCHAR(length=64), nullable=False)
    op.alter_column("invoice_lines", "quantity", new_column_name="gpu_hours")
    op.create_check_constraint(
        op.f("ck_invoice_lines_not_negative"), "invoice_lines", "gpu_hours >= 0 AND amount >= 0"
    )
