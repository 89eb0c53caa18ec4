"""Registries: the configured registries the catalog is synced from and their project ↔ workspace
mapping; catalog images get their registry, labels, last push, last sync and when they went missing;
environments get the digest their image was pinned to (observed) and `restart --pull`'s generation
(desired).

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DNS_LABEL = "~ '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$'"


def upgrade() -> None:
    op.create_table(
        "registries",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("url", sa.String(length=512), nullable=False),
        sa.Column("host", sa.String(length=253), nullable=False),
        sa.Column("last_synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_sync_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(f"name {_DNS_LABEL}", name=op.f("ck_registries_name_dns_label")),
        sa.CheckConstraint("kind IN ('oci', 'harbor')", name=op.f("ck_registries_kind_known")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registries")),
        sa.UniqueConstraint("name", name=op.f("uq_registries_name")),
        sa.UniqueConstraint("host", name=op.f("uq_registries_host")),
    )
    op.create_table(
        "registry_projects",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("registry_id", sa.Uuid(), nullable=False),
        sa.Column("path", sa.String(length=255), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(
            ["registry_id"],
            ["registries.id"],
            name=op.f("fk_registry_projects_registry_id_registries"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_registry_projects_workspace_id_workspaces"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_projects")),
        sa.UniqueConstraint("registry_id", "path", name=op.f("uq_registry_projects_registry_id_path")),
    )
    op.create_index(
        op.f("ix_registry_projects_workspace_id"), "registry_projects", ["workspace_id"], unique=False
    )
    op.add_column("images", sa.Column("registry_id", sa.Uuid(), nullable=True))
    op.add_column(
        "images",
        sa.Column("labels", postgresql.JSONB(astext_type=sa.Text()), server_default="[]", nullable=False),
    )
    op.add_column("images", sa.Column("pushed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("images", sa.Column("synced_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("images", sa.Column("gone_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(op.f("ix_images_registry_id"), "images", ["registry_id"], unique=False)
    op.create_foreign_key(
        op.f("fk_images_registry_id_registries"),
        "images",
        "registries",
        ["registry_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.add_column(
        "environments",
        sa.Column("image_pull_generation", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.add_column("environments", sa.Column("image_digest", sa.String(length=80), nullable=True))
    op.add_column("environments", sa.Column("image_pinned_reference", sa.String(length=700), nullable=True))
    op.add_column("environments", sa.Column("image_pinned_generation", sa.BigInteger(), nullable=True))
    op.add_column("environments", sa.Column("image_pinned_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("environments", "image_pinned_at")
    op.drop_column("environments", "image_pinned_generation")
    op.drop_column("environments", "image_pinned_reference")
    op.drop_column("environments", "image_digest")
    op.drop_column("environments", "image_pull_generation")
    op.drop_constraint(op.f("fk_images_registry_id_registries"), "images", type_="foreignkey")
    op.drop_index(op.f("ix_images_registry_id"), table_name="images")
    op.drop_column("images", "gone_at")
    op.drop_column("images", "synced_at")
    op.drop_column("images", "pushed_at")
    op.drop_column("images", "labels")
    op.drop_column("images", "registry_id")
    op.drop_index(op.f("ix_registry_projects_workspace_id"), table_name="registry_projects")
    op.drop_table("registry_projects")
    op.drop_table("registries")
