"""Initial schema: the whole domain of DESIGN.md, plus triggers for append-only and immutable rows.

Revision ID: 0001
Revises:
Create Date: 2026-11-24 11:45:12.519099

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "hosts",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("labels", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False),
        sa.Column("cpu_millis_allocatable", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("memory_bytes_allocatable", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column(
            "foreign_ports", postgresql.JSONB(astext_type=sa.Text()), server_default="[]", nullable=False
        ),
        sa.Column("cpu_millis_foreign", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("memory_bytes_foreign", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cpu_millis_claimed", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("memory_bytes_claimed", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("gpus_claimed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("ports_claimed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("port_range_start", sa.Integer(), server_default="30000", nullable=False),
        sa.Column("port_range_end", sa.Integer(), server_default="32767", nullable=False),
        sa.Column("cordoned", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("draining", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("cordon_reason", sa.Text(), nullable=True),
        sa.Column(
            "health",
            sa.Enum(
                "unknown",
                "ready",
                "down",
                name="health",
                native_enum=False,
                create_constraint=True,
                length=15,
            ),
            server_default="unknown",
            nullable=False,
        ),
        sa.Column("last_heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "cpu_millis_allocatable >= 0 AND memory_bytes_allocatable >= 0 AND cpu_millis_foreign >= 0 AND memory_bytes_foreign >= 0 AND cpu_millis_claimed >= 0 AND memory_bytes_claimed >= 0 AND gpus_claimed >= 0 AND ports_claimed >= 0",
            name=op.f("ck_hosts_capacity_not_negative"),
        ),
        sa.CheckConstraint(
            "port_range_start >= 1 AND port_range_start <= port_range_end AND port_range_end <= 65535",
            name=op.f("ck_hosts_port_range_valid"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hosts")),
        sa.UniqueConstraint("name", name=op.f("uq_hosts_name")),
    )
    op.create_table(
        "shard_leaders",
        sa.Column("shard", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("epoch", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("leader_id", sa.String(length=128), nullable=True),
        sa.Column("leader_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("shard >= 0 AND epoch >= 0", name=op.f("ck_shard_leaders_not_negative")),
        sa.PrimaryKeyConstraint("shard", name=op.f("pk_shard_leaders")),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column(
            "role",
            sa.Enum("admin", "user", name="role", native_enum=False, create_constraint=True, length=13),
            server_default="user",
            nullable=False,
        ),
        sa.Column("disabled", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "email = lower(email) AND position('@' in email) > 1", name=op.f("ck_users_email_normalised")
        ),
        sa.CheckConstraint("length(username) >= 2", name=op.f("ck_users_username_length")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("token_prefix", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_api_tokens_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_index(op.f("ix_api_tokens_user_id"), "api_tokens", ["user_id"], unique=False)
    op.create_table(
        "gpu_pools",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("host_id", sa.Uuid(), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("total", sa.Integer(), server_default="0", nullable=False),
        sa.Column("free", sa.Integer(), server_default="0", nullable=False),
        sa.CheckConstraint("free >= 0 AND free <= total", name=op.f("ck_gpu_pools_free_within_total")),
        sa.ForeignKeyConstraint(
            ["host_id"], ["hosts.id"], name=op.f("fk_gpu_pools_host_id_hosts"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gpu_pools")),
        sa.UniqueConstraint("host_id", "model", name=op.f("uq_gpu_pools_host_id_model")),
    )
    op.create_index("ix_gpu_pools_model_free", "gpu_pools", ["model", "free"], unique=False)
    op.create_table(
        "gpus",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("host_id", sa.Uuid(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("device_uuid", sa.String(length=64), nullable=True),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("memory_bytes", sa.BigInteger(), nullable=True),
        sa.Column(
            "health",
            sa.Enum(
                "healthy", "unhealthy", name="health", native_enum=False, create_constraint=True, length=17
            ),
            server_default="healthy",
            nullable=False,
        ),
        sa.Column("health_reason", sa.Text(), nullable=True),
        sa.Column("foreign_use", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint('"index" >= 0', name=op.f("ck_gpus_index_not_negative")),
        sa.ForeignKeyConstraint(
            ["host_id"], ["hosts.id"], name=op.f("fk_gpus_host_id_hosts"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gpus")),
        sa.UniqueConstraint("device_uuid", name=op.f("uq_gpus_device_uuid")),
        sa.UniqueConstraint("host_id", "index", name=op.f("uq_gpus_host_id_index")),
    )
    op.create_table(
        "workspaces",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("display_name", sa.String(length=200), server_default="", nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "name ~ '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$'", name=op.f("ck_workspaces_name_dns_label")
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_workspaces_owner_id_users"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workspaces")),
    )
    op.create_index(op.f("ix_workspaces_owner_id"), "workspaces", ["owner_id"], unique=False)
    op.create_index(
        "uq_workspaces_name_live",
        "workspaces",
        ["name"],
        unique=True,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_table(
        "environments",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("spec", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("generation", sa.BigInteger(), server_default="1", nullable=False),
        sa.Column(
            "desired_state",
            sa.Enum(
                "running",
                "stopped",
                "deleted",
                name="desired_state",
                native_enum=False,
                create_constraint=True,
                length=15,
            ),
            server_default="running",
            nullable=False,
        ),
        sa.Column("desired_version", sa.BigInteger(), server_default="1", nullable=False),
        sa.Column("priority", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "submitted_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("gpu_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("gpu_model", sa.String(length=64), nullable=True),
        sa.Column("cpu_millis", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("memory_bytes", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("storage_bytes", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column(
            "phase",
            sa.Enum(
                "pending",
                "admitted",
                "scheduled",
                "provisioning",
                "running",
                "stopping",
                "stopped",
                "deleting",
                "deleted",
                "failed",
                name="phase",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            server_default="pending",
            nullable=False,
        ),
        sa.Column("observed_generation", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("seen_desired_version", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("conditions", postgresql.JSONB(astext_type=sa.Text()), server_default="[]", nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("retry_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "phase_entered_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("host_id", sa.Uuid(), nullable=True),
        sa.Column("allocated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("queue_position", sa.Integer(), nullable=True),
        sa.Column("queue_reason", sa.Text(), nullable=True),
        sa.Column("shard", sa.Integer(), server_default="0", nullable=False),
        sa.Column("lock_token", sa.Uuid(), nullable=True),
        sa.Column("lock_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lock_owner", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "name ~ '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$'", name=op.f("ck_environments_name_dns_label")
        ),
        sa.CheckConstraint(
            "(lock_token IS NULL) = (lock_expires_at IS NULL)", name=op.f("ck_environments_lease_complete")
        ),
        sa.CheckConstraint(
            "generation >= 1 AND observed_generation >= 0", name=op.f("ck_environments_generation_valid")
        ),
        sa.CheckConstraint(
            "gpu_count >= 0 AND cpu_millis >= 0 AND memory_bytes >= 0 AND storage_bytes >= 0",
            name=op.f("ck_environments_requests_not_negative"),
        ),
        sa.CheckConstraint(
            "retry_count >= 0 AND shard >= 0", name=op.f("ck_environments_counters_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["host_id"], ["hosts.id"], name=op.f("fk_environments_host_id_hosts"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_environments_user_id_users"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_environments_workspace_id_workspaces"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_environments")),
    )
    op.create_index(op.f("ix_environments_host_id"), "environments", ["host_id"], unique=False)
    op.create_index(op.f("ix_environments_phase"), "environments", ["phase"], unique=False)
    op.create_index(
        "ix_environments_shard_next_attempt_at", "environments", ["shard", "next_attempt_at"], unique=False
    )
    op.create_index(op.f("ix_environments_user_id"), "environments", ["user_id"], unique=False)
    op.create_index(
        "uq_environments_workspace_id_name_live",
        "environments",
        ["workspace_id", "name"],
        unique=True,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_table(
        "images",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("registry_host", sa.String(length=253), nullable=False),
        sa.Column("repository", sa.String(length=255), nullable=False),
        sa.Column("tag", sa.String(length=128), nullable=False),
        sa.Column("digest", sa.String(length=80), nullable=True),
        sa.Column("framework", sa.String(length=64), nullable=True),
        sa.Column("cuda_version", sa.String(length=16), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column(
            "visibility",
            sa.Enum(
                "public", "private", name="visibility", native_enum=False, create_constraint=True, length=15
            ),
            server_default="public",
            nullable=False,
        ),
        sa.Column("owner_workspace_id", sa.Uuid(), nullable=True),
        sa.Column("source", sa.String(length=32), server_default="manual", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "digest IS NULL OR digest ~ '^[a-z0-9]+:[a-f0-9]{32,}$'", name=op.f("ck_images_digest_format")
        ),
        sa.CheckConstraint(
            "visibility = 'public' OR owner_workspace_id IS NOT NULL",
            name=op.f("ck_images_private_has_owner"),
        ),
        sa.CheckConstraint("coalesce(size_bytes, 0) >= 0", name=op.f("ck_images_size_not_negative")),
        sa.ForeignKeyConstraint(
            ["owner_workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_images_owner_workspace_id_workspaces"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_images")),
        sa.UniqueConstraint(
            "registry_host", "repository", "tag", name=op.f("uq_images_registry_host_repository_tag")
        ),
    )
    op.create_index(op.f("ix_images_name"), "images", ["name"], unique=False)
    op.create_index(op.f("ix_images_owner_workspace_id"), "images", ["owner_workspace_id"], unique=False)
    op.create_table(
        "invoices",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=True),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "draft", "finalized", name="status", native_enum=False, create_constraint=True, length=17
            ),
            server_default="draft",
            nullable=False,
        ),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("total", sa.Numeric(precision=18, scale=6), server_default="0", nullable=False),
        sa.Column("finalized_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "(status = 'finalized') = (finalized_at IS NOT NULL)", name=op.f("ck_invoices_finalized_when")
        ),
        sa.CheckConstraint("num_nonnulls(workspace_id, user_id) = 1", name=op.f("ck_invoices_one_subject")),
        sa.CheckConstraint("period_end > period_start", name=op.f("ck_invoices_period_valid")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_invoices_user_id_users"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_invoices_workspace_id_workspaces"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoices")),
        sa.UniqueConstraint("user_id", "period_start", name=op.f("uq_invoices_user_id_period_start")),
        sa.UniqueConstraint(
            "workspace_id", "period_start", name=op.f("uq_invoices_workspace_id_period_start")
        ),
    )
    op.create_table(
        "resource_quotas",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=True),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("max_gpus", sa.Integer(), nullable=True),
        sa.Column("max_cpu_millis", sa.BigInteger(), nullable=True),
        sa.Column("max_memory_bytes", sa.BigInteger(), nullable=True),
        sa.Column("max_storage_bytes", sa.BigInteger(), nullable=True),
        sa.Column("max_running_environments", sa.Integer(), nullable=True),
        sa.Column("used_gpus", sa.Integer(), server_default="0", nullable=False),
        sa.Column("used_cpu_millis", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("used_memory_bytes", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("used_storage_bytes", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("running_environments", sa.Integer(), server_default="0", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "coalesce(max_gpus, 0) >= 0 AND coalesce(max_cpu_millis, 0) >= 0 AND coalesce(max_memory_bytes, 0) >= 0 AND coalesce(max_storage_bytes, 0) >= 0 AND coalesce(max_running_environments, 0) >= 0",
            name=op.f("ck_resource_quotas_limits_not_negative"),
        ),
        sa.CheckConstraint(
            "num_nonnulls(workspace_id, user_id) = 1", name=op.f("ck_resource_quotas_one_subject")
        ),
        sa.CheckConstraint(
            "used_gpus >= 0 AND used_cpu_millis >= 0 AND used_memory_bytes >= 0 AND used_storage_bytes >= 0 AND running_environments >= 0",
            name=op.f("ck_resource_quotas_usage_not_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_resource_quotas_user_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_resource_quotas_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resource_quotas")),
        sa.UniqueConstraint("user_id", name=op.f("uq_resource_quotas_user_id")),
        sa.UniqueConstraint("workspace_id", name=op.f("uq_resource_quotas_workspace_id")),
    )
    op.create_table(
        "workspace_members",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column(
            "role",
            sa.Enum(
                "owner",
                "admin",
                "member",
                "viewer",
                name="role",
                native_enum=False,
                create_constraint=True,
                length=14,
            ),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_workspace_members_user_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_workspace_members_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workspace_members")),
        sa.UniqueConstraint(
            "workspace_id", "user_id", name=op.f("uq_workspace_members_workspace_id_user_id")
        ),
    )
    op.create_index(op.f("ix_workspace_members_user_id"), "workspace_members", ["user_id"], unique=False)
    op.create_table(
        "allocations",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("environment_id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("host_id", sa.Uuid(), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("gpu_model", sa.String(length=64), nullable=True),
        sa.Column("gpu_count", sa.Integer(), nullable=False),
        sa.Column("cpu_millis", sa.BigInteger(), nullable=False),
        sa.Column("memory_bytes", sa.BigInteger(), nullable=False),
        sa.Column("storage_bytes", sa.BigInteger(), nullable=False),
        sa.Column(
            "allocated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "gpu_count >= 0 AND cpu_millis >= 0 AND memory_bytes >= 0 AND storage_bytes >= 0",
            name=op.f("ck_allocations_not_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_allocations_environment_id_environments"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["host_id"], ["hosts.id"], name=op.f("fk_allocations_host_id_hosts"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_allocations_user_id_users"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_allocations_workspace_id_workspaces"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_allocations")),
    )
    op.create_index(op.f("ix_allocations_host_id"), "allocations", ["host_id"], unique=False)
    op.create_index(
        "uq_allocations_environment_id_active",
        "allocations",
        ["environment_id"],
        unique=True,
        postgresql_where=sa.text("released_at IS NULL"),
    )
    op.create_table(
        "billing_intervals",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("environment_id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("gpu_model", sa.String(length=64), nullable=False),
        sa.Column("gpu_count", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("unit_price", sa.Numeric(precision=18, scale=6), nullable=False),
        sa.Column("amount", sa.Numeric(precision=18, scale=6), nullable=False),
        sa.Column("invoice_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("ended_at > started_at", name=op.f("ck_billing_intervals_positive_length")),
        sa.CheckConstraint(
            "gpu_count >= 0 AND unit_price >= 0 AND amount >= 0",
            name=op.f("ck_billing_intervals_not_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_billing_intervals_environment_id_environments"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
            name=op.f("fk_billing_intervals_invoice_id_invoices"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_billing_intervals_user_id_users"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_billing_intervals_workspace_id_workspaces"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_intervals")),
        sa.UniqueConstraint(
            "environment_id", "started_at", name=op.f("uq_billing_intervals_environment_id_started_at")
        ),
    )
    op.create_index(
        op.f("ix_billing_intervals_invoice_id"), "billing_intervals", ["invoice_id"], unique=False
    )
    op.create_index(op.f("ix_billing_intervals_user_id"), "billing_intervals", ["user_id"], unique=False)
    op.create_index(
        op.f("ix_billing_intervals_workspace_id"), "billing_intervals", ["workspace_id"], unique=False
    )
    op.create_table(
        "claim_history",
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("gpu", "port", name="kind", native_enum=False, create_constraint=True, length=12),
            nullable=False,
        ),
        sa.Column(
            "action",
            sa.Enum("claim", "release", name="action", native_enum=False, create_constraint=True, length=15),
            nullable=False,
        ),
        sa.Column("environment_id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("host_id", sa.Uuid(), nullable=False),
        sa.Column("gpu_id", sa.Uuid(), nullable=True),
        sa.Column("gpu_model", sa.String(length=64), nullable=True),
        sa.Column("host_port", sa.Integer(), nullable=True),
        sa.Column(
            "protocol",
            sa.Enum("tcp", "udp", name="protocol", native_enum=False, create_constraint=True, length=11),
            nullable=True,
        ),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.Column("txid", sa.BigInteger(), server_default=sa.text("txid_current()"), nullable=False),
        sa.CheckConstraint(
            "(kind = 'gpu' AND gpu_id IS NOT NULL AND gpu_model IS NOT NULL AND host_port IS NULL AND protocol IS NULL) OR (kind = 'port' AND gpu_id IS NULL AND host_port IS NOT NULL AND protocol IS NOT NULL)",
            name=op.f("ck_claim_history_kind_fields"),
        ),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_claim_history_environment_id_environments"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["gpu_id"], ["gpus.id"], name=op.f("fk_claim_history_gpu_id_gpus"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["host_id"], ["hosts.id"], name=op.f("fk_claim_history_host_id_hosts"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_claim_history_user_id_users"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_claim_history_workspace_id_workspaces"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_claim_history")),
    )
    op.create_index(
        op.f("ix_claim_history_environment_id"), "claim_history", ["environment_id"], unique=False
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.Column(
            "actor_kind",
            sa.Enum(
                "user",
                "reconciler",
                "system",
                name="actor_kind",
                native_enum=False,
                create_constraint=True,
                length=18,
            ),
            nullable=False,
        ),
        sa.Column("actor_user_id", sa.Uuid(), nullable=True),
        sa.Column("workspace_id", sa.Uuid(), nullable=True),
        sa.Column("environment_id", sa.Uuid(), nullable=True),
        sa.Column("host_id", sa.Uuid(), nullable=True),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=128), nullable=False),
        sa.Column("message", sa.Text(), server_default="", nullable=False),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_user_id"], ["users.id"], name=op.f("fk_events_actor_user_id_users"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_events_environment_id_environments"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["host_id"], ["hosts.id"], name=op.f("fk_events_host_id_hosts"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_events_workspace_id_workspaces"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("seq", name=op.f("uq_events_seq")),
    )
    op.create_index("ix_events_environment_id_seq", "events", ["environment_id", "seq"], unique=False)
    op.create_index("ix_events_workspace_id_seq", "events", ["workspace_id", "seq"], unique=False)
    op.create_table(
        "gpu_claims",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("gpu_id", sa.Uuid(), nullable=False),
        sa.Column("environment_id", sa.Uuid(), nullable=False),
        sa.Column("host_id", sa.Uuid(), nullable=False),
        sa.Column(
            "claimed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "released_at IS NULL OR released_at >= claimed_at", name=op.f("ck_gpu_claims_release_after_claim")
        ),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_gpu_claims_environment_id_environments"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["gpu_id"], ["gpus.id"], name=op.f("fk_gpu_claims_gpu_id_gpus"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["host_id"], ["hosts.id"], name=op.f("fk_gpu_claims_host_id_hosts"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gpu_claims")),
    )
    op.create_index(op.f("ix_gpu_claims_environment_id"), "gpu_claims", ["environment_id"], unique=False)
    op.create_index(op.f("ix_gpu_claims_host_id"), "gpu_claims", ["host_id"], unique=False)
    op.create_index(
        "uq_gpu_claims_gpu_id_active",
        "gpu_claims",
        ["gpu_id"],
        unique=True,
        postgresql_where=sa.text("released_at IS NULL"),
    )
    op.create_table(
        "gpu_model_quotas",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("quota_id", sa.Uuid(), nullable=False),
        sa.Column("gpu_model", sa.String(length=64), nullable=False),
        sa.Column("max_gpus", sa.Integer(), nullable=True),
        sa.Column("used_gpus", sa.Integer(), server_default="0", nullable=False),
        sa.CheckConstraint(
            "coalesce(max_gpus, 0) >= 0 AND used_gpus >= 0", name=op.f("ck_gpu_model_quotas_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["quota_id"],
            ["resource_quotas.id"],
            name=op.f("fk_gpu_model_quotas_quota_id_resource_quotas"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gpu_model_quotas")),
        sa.UniqueConstraint("quota_id", "gpu_model", name=op.f("uq_gpu_model_quotas_quota_id_gpu_model")),
    )
    op.create_table(
        "invoice_lines",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("invoice_id", sa.Uuid(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("gpu_model", sa.String(length=64), nullable=False),
        sa.Column("gpu_hours", sa.Numeric(precision=18, scale=6), nullable=False),
        sa.Column("unit_price", sa.Numeric(precision=18, scale=6), nullable=False),
        sa.Column("amount", sa.Numeric(precision=18, scale=6), nullable=False),
        sa.CheckConstraint("gpu_hours >= 0 AND amount >= 0", name=op.f("ck_invoice_lines_not_negative")),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
            name=op.f("fk_invoice_lines_invoice_id_invoices"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoice_lines")),
    )
    op.create_index(op.f("ix_invoice_lines_invoice_id"), "invoice_lines", ["invoice_id"], unique=False)
    op.create_table(
        "port_mappings",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("environment_id", sa.Uuid(), nullable=False),
        sa.Column("host_id", sa.Uuid(), nullable=False),
        sa.Column("container_port", sa.Integer(), nullable=False),
        sa.Column("host_port", sa.Integer(), nullable=False),
        sa.Column(
            "protocol",
            sa.Enum("tcp", "udp", name="protocol", native_enum=False, create_constraint=True, length=11),
            server_default="tcp",
            nullable=False,
        ),
        sa.Column(
            "purpose",
            sa.Enum(
                "ssh",
                "jupyter",
                "http",
                "custom",
                name="purpose",
                native_enum=False,
                create_constraint=True,
                length=15,
            ),
            nullable=False,
        ),
        sa.Column("name", sa.String(length=63), nullable=True),
        sa.Column(
            "claimed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "container_port BETWEEN 1 AND 65535 AND host_port BETWEEN 1 AND 65535",
            name=op.f("ck_port_mappings_ports_valid"),
        ),
        sa.CheckConstraint(
            "released_at IS NULL OR released_at >= claimed_at",
            name=op.f("ck_port_mappings_release_after_claim"),
        ),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_port_mappings_environment_id_environments"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["host_id"], ["hosts.id"], name=op.f("fk_port_mappings_host_id_hosts"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_port_mappings")),
    )
    op.create_index(
        op.f("ix_port_mappings_environment_id"), "port_mappings", ["environment_id"], unique=False
    )
    op.create_index(
        "uq_port_mappings_container_port_active",
        "port_mappings",
        ["environment_id", "container_port", "protocol"],
        unique=True,
        postgresql_where=sa.text("released_at IS NULL"),
    )
    op.create_index(
        "uq_port_mappings_host_port_active",
        "port_mappings",
        ["host_id", "host_port", "protocol"],
        unique=True,
        postgresql_where=sa.text("released_at IS NULL"),
    )
    op.create_table(
        "access_endpoints",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("environment_id", sa.Uuid(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "ssh",
                "jupyter",
                "http",
                "guacamole",
                "jumpserver",
                name="kind",
                native_enum=False,
                create_constraint=True,
                length=18,
            ),
            nullable=False,
        ),
        sa.Column("port_mapping_id", sa.Uuid(), nullable=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("command", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_access_endpoints_environment_id_environments"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["port_mapping_id"],
            ["port_mappings.id"],
            name=op.f("fk_access_endpoints_port_mapping_id_port_mappings"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_endpoints")),
    )
    op.create_index(
        "uq_access_endpoints_environment_id_kind_live",
        "access_endpoints",
        ["environment_id", "kind"],
        unique=True,
        postgresql_where=sa.text("removed_at IS NULL"),
    )

    _create_guard_triggers()


def downgrade() -> None:
    """Downgrade schema."""
    _drop_guard_triggers()
    op.drop_index(
        "uq_access_endpoints_environment_id_kind_live",
        table_name="access_endpoints",
        postgresql_where=sa.text("removed_at IS NULL"),
    )
    op.drop_table("access_endpoints")
    op.drop_index(
        "uq_port_mappings_host_port_active",
        table_name="port_mappings",
        postgresql_where=sa.text("released_at IS NULL"),
    )
    op.drop_index(
        "uq_port_mappings_container_port_active",
        table_name="port_mappings",
        postgresql_where=sa.text("released_at IS NULL"),
    )
    op.drop_index(op.f("ix_port_mappings_environment_id"), table_name="port_mappings")
    op.drop_table("port_mappings")
    op.drop_index(op.f("ix_invoice_lines_invoice_id"), table_name="invoice_lines")
    op.drop_table("invoice_lines")
    op.drop_table("gpu_model_quotas")
    op.drop_index(
        "uq_gpu_claims_gpu_id_active",
        table_name="gpu_claims",
        postgresql_where=sa.text("released_at IS NULL"),
    )
    op.drop_index(op.f("ix_gpu_claims_host_id"), table_name="gpu_claims")
    op.drop_index(op.f("ix_gpu_claims_environment_id"), table_name="gpu_claims")
    op.drop_table("gpu_claims")
    op.drop_index("ix_events_workspace_id_seq", table_name="events")
    op.drop_index("ix_events_environment_id_seq", table_name="events")
    op.drop_table("events")
    op.drop_index(op.f("ix_claim_history_environment_id"), table_name="claim_history")
    op.drop_table("claim_history")
    op.drop_index(op.f("ix_billing_intervals_workspace_id"), table_name="billing_intervals")
    op.drop_index(op.f("ix_billing_intervals_user_id"), table_name="billing_intervals")
    op.drop_index(op.f("ix_billing_intervals_invoice_id"), table_name="billing_intervals")
    op.drop_table("billing_intervals")
    op.drop_index(
        "uq_allocations_environment_id_active",
        table_name="allocations",
        postgresql_where=sa.text("released_at IS NULL"),
    )
    op.drop_index(op.f("ix_allocations_host_id"), table_name="allocations")
    op.drop_table("allocations")
    op.drop_index(op.f("ix_workspace_members_user_id"), table_name="workspace_members")
    op.drop_table("workspace_members")
    op.drop_table("resource_quotas")
    op.drop_table("invoices")
    op.drop_index(op.f("ix_images_owner_workspace_id"), table_name="images")
    op.drop_index(op.f("ix_images_name"), table_name="images")
    op.drop_table("images")
    op.drop_index(
        "uq_environments_workspace_id_name_live",
        table_name="environments",
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.drop_index(op.f("ix_environments_user_id"), table_name="environments")
    op.drop_index("ix_environments_shard_next_attempt_at", table_name="environments")
    op.drop_index(op.f("ix_environments_phase"), table_name="environments")
    op.drop_index(op.f("ix_environments_host_id"), table_name="environments")
    op.drop_table("environments")
    op.drop_index(
        "uq_workspaces_name_live", table_name="workspaces", postgresql_where=sa.text("deleted_at IS NULL")
    )
    op.drop_index(op.f("ix_workspaces_owner_id"), table_name="workspaces")
    op.drop_table("workspaces")
    op.drop_table("gpus")
    op.drop_index("ix_gpu_pools_model_free", table_name="gpu_pools")
    op.drop_table("gpu_pools")
    op.drop_index(op.f("ix_api_tokens_user_id"), table_name="api_tokens")
    op.drop_table("api_tokens")
    op.drop_table("users")
    op.drop_table("shard_leaders")
    op.drop_table("hosts")


APPEND_ONLY_TABLES = ("claim_history", "events")


def _create_guard_triggers() -> None:
    """Refuse UPDATE/DELETE on append-only logs and any change to a finalized invoice or its lines."""
    op.execute(
        """
        CREATE FUNCTION remotegpu_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
                USING ERRCODE = 'restrict_violation';
        END $$
        """
    )
    for table in APPEND_ONLY_TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}"
            " FOR EACH ROW EXECUTE FUNCTION remotegpu_refuse_change()"
        )
    op.execute(
        """
        CREATE FUNCTION remotegpu_guard_finalized_invoice() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF OLD.status = 'finalized' THEN
                RAISE EXCEPTION 'invoice % is finalized and immutable: % refused', OLD.id, TG_OP
                    USING ERRCODE = 'restrict_violation';
            END IF;
            IF TG_OP = 'DELETE' THEN
                RETURN OLD;
            END IF;
            RETURN NEW;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER invoices_immutable_when_finalized BEFORE UPDATE OR DELETE ON invoices"
        " FOR EACH ROW EXECUTE FUNCTION remotegpu_guard_finalized_invoice()"
    )
    op.execute(
        """
        CREATE FUNCTION remotegpu_guard_finalized_invoice_line() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            parent uuid := CASE WHEN TG_OP = 'DELETE' THEN OLD.invoice_id ELSE NEW.invoice_id END;
        BEGIN
            IF EXISTS (SELECT 1 FROM invoices WHERE id = parent AND status = 'finalized')
               OR (TG_OP = 'UPDATE' AND EXISTS (
                   SELECT 1 FROM invoices WHERE id = OLD.invoice_id AND status = 'finalized')) THEN
                RAISE EXCEPTION 'invoice % is finalized and immutable: % of a line refused', parent, TG_OP
                    USING ERRCODE = 'restrict_violation';
            END IF;
            IF TG_OP = 'DELETE' THEN
                RETURN OLD;
            END IF;
            RETURN NEW;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER invoice_lines_immutable_when_finalized BEFORE INSERT OR UPDATE OR DELETE"
        " ON invoice_lines FOR EACH ROW EXECUTE FUNCTION remotegpu_guard_finalized_invoice_line()"
    )


def _drop_guard_triggers() -> None:
    op.execute("DROP TRIGGER invoice_lines_immutable_when_finalized ON invoice_lines")
    op.execute("DROP FUNCTION remotegpu_guard_finalized_invoice_line()")
    op.execute("DROP TRIGGER invoices_immutable_when_finalized ON invoices")
    op.execute("DROP FUNCTION remotegpu_guard_finalized_invoice()")
    for table in APPEND_ONLY_TABLES:
        op.execute(f"DROP TRIGGER {table}_append_only ON {table}")
    op.execute("DROP FUNCTION remotegpu_refuse_change()")
