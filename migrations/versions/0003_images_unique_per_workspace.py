"""Image references unique per namespace (the public catalog, or one workspace's private entries), not
globally: a global constraint told a workspace that another one held the same private reference.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint("uq_images_registry_host_repository_tag", "images", type_="unique")
    op.create_index(
        "uq_images_public_reference",
        "images",
        ["registry_host", "repository", "tag"],
        unique=True,
        postgresql_where=sa.text("visibility = 'public'"),
    )
    op.create_index(
        "uq_images_owner_workspace_id_reference",
        "images",
        ["owner_workspace_id", "registry_host", "repository", "tag"],
        unique=True,
        postgresql_where=sa.text("visibility = 'private'"),
    )


def downgrade() -> None:
    # Fails while two namespaces hold the same reference: remove one of them first.
    op.drop_index("uq_images_owner_workspace_id_reference", table_name="images")
    op.drop_index("uq_images_public_reference", table_name="images")
    op.create_unique_constraint(
        "uq_images_registry_host_repository_tag", "images", ["registry_host", "repository", "tag"]
    )
