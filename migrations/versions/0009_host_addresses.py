"""Host addresses: the address a node reports users can reach it by, and an admin's override.

Revision ID: 0009
Revises: 0007
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("hosts", sa.Column("address", sa.String(length=253), nullable=True))
    op.add_column("hosts", sa.Column("address_source", sa.String(length=32), nullable=True))
    op.add_column("hosts", sa.Column("public_address", sa.String(length=253), nullable=True))


def downgrade() -> None:
    op.drop_column("hosts", "public_address")
    op.drop_column("hosts", "address_source")
    op.drop_column("hosts", "address")
