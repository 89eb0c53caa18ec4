"""Workspaces, their members, and the quotas that bound a workspace or a user."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from remotegpu.core.environments.states import WorkspaceRole
from remotegpu.core.models.base import (
    DNS_LABEL_SQL,
    Base,
    CreatedAt,
    GpuModel,
    Name,
    UpdatedAt,
    UuidPk,
    enum_type,
)


class Workspace(Base):
    """A team space; every environment, image and invoice belongs to exactly one.

    Deletion is soft (`deleted_at`): billing and audit rows keep pointing at it, and their foreign keys
    are `ON DELETE RESTRICT`, so a hard delete of a workspace with history fails.
    """

    __tablename__ = "workspaces"
    __table_args__ = (
        CheckConstraint(f"name {DNS_LABEL_SQL}", name="name_dns_label"),
        Index("uq_workspaces_name_live", "name", unique=True, postgresql_where=text("deleted_at IS NULL")),
    )

    id: Mapped[UuidPk]
    name: Mapped[Name]
    """Short DNS-label name, unique among live workspaces."""
    display_name: Mapped[str] = mapped_column(String(200), default="", server_default="")
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]
    deleted_at: Mapped[dt.datetime | None]
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    """The workspace's settings as `core.accounts.workspace_settings.WorkspaceSettings` stores them
    (missing keys take the struct's defaults)."""


class WorkspaceMember(Base):
    """A user's role in a workspace; one row per (workspace, user)."""

    __tablename__ = "workspace_members"
    __table_args__ = (UniqueConstraint("workspace_id", "user_id"),)

    id: Mapped[UuidPk]
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[WorkspaceRole] = mapped_column(enum_type(WorkspaceRole, "role"))
    created_at: Mapped[CreatedAt]


class ResourceQuota(Base):
    """Limits and live usage counters of one workspace or one user.

    A NULL limit means unlimited. Usage may exceed a limit that an admin lowered; the allocator then
    admits nothing new until usage drops. Counters are changed only under the subject's quota advisory
    lock and can never go negative.
    """

    __tablename__ = "resource_quotas"
    __table_args__ = (
        CheckConstraint("num_nonnulls(workspace_id, user_id) = 1", name="one_subject"),
        CheckConstraint(
            "coalesce(max_gpus, 0) >= 0 AND coalesce(max_cpu_millis, 0) >= 0"
            " AND coalesce(max_memory_bytes, 0) >= 0 AND coalesce(max_storage_bytes, 0) >= 0"
            " AND coalesce(max_running_environments, 0) >= 0",
            name="limits_not_negative",
        ),
        CheckConstraint(
            "used_gpus >= 0 AND used_cpu_millis >= 0 AND used_memory_bytes >= 0"
            " AND used_storage_bytes >= 0 AND running_environments >= 0",
            name="usage_not_negative",
        ),
    )

    id: Mapped[UuidPk]
    workspace_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), unique=True
    )
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    max_gpus: Mapped[int | None]
    max_cpu_millis: Mapped[int | None] = mapped_column(BigInteger)
    max_memory_bytes: Mapped[int | None] = mapped_column(BigInteger)
    max_storage_bytes: Mapped[int | None] = mapped_column(BigInteger)
    max_running_environments: Mapped[int | None]
    used_gpus: Mapped[int] = mapped_column(default=0, server_default="0")
    used_cpu_millis: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    used_memory_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    used_storage_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    running_environments: Mapped[int] = mapped_column(default=0, server_default="0")
    updated_at: Mapped[UpdatedAt]


class GpuModelQuota(Base):
    """A per-GPU-model limit and usage counter under a `ResourceQuota`."""

    __tablename__ = "gpu_model_quotas"
    __table_args__ = (
        UniqueConstraint("quota_id", "gpu_model"),
        CheckConstraint("coalesce(max_gpus, 0) >= 0 AND used_gpus >= 0", name="not_negative"),
    )

    id: Mapped[UuidPk]
    quota_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("resource_quotas.id", ondelete="CASCADE"))
    gpu_model: Mapped[GpuModel]
    max_gpus: Mapped[int | None]
    used_gpus: Mapped[int] = mapped_column(default=0, server_default="0")
