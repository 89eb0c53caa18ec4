"""Environments: the desired spec and what the reconciler observed, in one row.

The API and CLI write only the desired side (spec, generation, desired_state, the requested resources
copied from the spec); only the reconciler writes the observed side (phase onwards) and the lease.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from remotegpu.core.environments import due
from remotegpu.core.environments.states import DesiredState, Phase
from remotegpu.core.models.base import (
    DNS_LABEL_SQL,
    Base,
    Bytes,
    CreatedAt,
    Millis,
    Name,
    UpdatedAt,
    UuidPk,
    WriterStamped,
    enum_type,
)


class Environment(WriterStamped, Base):
    """A rented GPU environment."""

    __tablename__ = "environments"
    __table_args__ = (
        CheckConstraint(f"name {DNS_LABEL_SQL}", name="name_dns_label"),
        CheckConstraint("generation >= 1 AND observed_generation >= 0", name="generation_valid"),
        CheckConstraint(
            "gpu_count >= 0 AND cpu_millis >= 0 AND memory_bytes >= 0 AND storage_bytes >= 0",
            name="requests_not_negative",
        ),
        CheckConstraint("retry_count >= 0 AND shard >= 0", name="counters_not_negative"),
        CheckConstraint("storage_bytes_held >= 0", name="storage_held_not_negative"),
        CheckConstraint("(lock_token IS NULL) = (lock_expires_at IS NULL)", name="lease_complete"),
        Index(
            "uq_environments_workspace_id_name_live",
            "workspace_id",
            "name",
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
        ),
        # What a lease reads: one partial index per way to be due (`core.environments.due`), each in
        # due order, so a lease scans a few entries of one of them (migration 0019)
        Index("ix_environments_due_changed", "shard", text(due.DUE_AT), postgresql_where=text(due.CHANGED)),
        Index("ix_environments_due_work", "shard", text(due.DUE_AT), postgresql_where=text(due.WORK)),
        Index("ix_environments_due_resync", "shard", text(due.DUE_AT), postgresql_where=text(due.RESYNC)),
        # Lists page newest first (keyset on created_at, id), over all or over one workspace.
        Index(
            "ix_environments_created_at_id_live",
            "created_at",
            "id",
            postgresql_where=text("deleted_at IS NULL"),
        ),
        Index(
            "ix_environments_workspace_id_created_at_id_live",
            "workspace_id",
            "created_at",
            "id",
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    id: Mapped[UuidPk]
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="RESTRICT"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    """The user who created it and whose user quota it counts against."""
    name: Mapped[Name]

    # Desired side.
    spec: Mapped[dict[str, Any]]
    """The spec as the user wrote it, validated and normalised."""
    generation: Mapped[int] = mapped_column(BigInteger, default=1, server_default="1")
    """Bumped on every spec change."""
    desired_state: Mapped[DesiredState] = mapped_column(
        enum_type(DesiredState, "desired_state"),
        default=DesiredState.RUNNING,
        server_default=DesiredState.RUNNING.value,
    )
    desired_version: Mapped[int] = mapped_column(BigInteger, default=1, server_default="1")
    """Bumped on every desired-side write (spec or state): the reconciler's "look at me now" signal."""
    priority: Mapped[int] = mapped_column(default=0, server_default="0")
    image_pull_generation: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    """Set to the new generation by `restart --pull`: a pin older than it is resolved again."""
    submitted_at: Mapped[CreatedAt]
    """When it last asked to run; orders the capacity queue after priority."""
    gpu_count: Mapped[int] = mapped_column(default=0, server_default="0")
    gpu_model: Mapped[str | None] = mapped_column(String(64))
    """Requested GPU model; NULL means any model."""
    cpu_millis: Mapped[Millis] = mapped_column(default=0, server_default="0")
    memory_bytes: Mapped[Bytes] = mapped_column(default=0, server_default="0")
    storage_bytes: Mapped[Bytes] = mapped_column(default=0, server_default="0")
    storage_bytes_held: Mapped[Bytes] = mapped_column(default=0, server_default="0")
    """Storage its volumes hold, counted in the workspace's and user's quotas from the first placement
    until the delete removes them (a stop keeps volumes, and so keeps this)."""

    # Observed side.
    phase: Mapped[Phase] = mapped_column(
        enum_type(Phase, "phase"), default=Phase.PENDING, server_default=Phase.PENDING.value, index=True
    )
    observed_generation: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    seen_desired_version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    """The `desired_version` the reconciler last acted on; a difference makes the row due at once."""
    conditions: Mapped[list[dict[str, Any]]] = mapped_column(default=list, server_default="[]")
    reason: Mapped[str | None] = mapped_column(String(64))
    """Machine-readable reason of the current phase (e.g. `ImagePullBackOff`)."""
    last_error: Mapped[str | None] = mapped_column(Text)
    retry_count: Mapped[int] = mapped_column(default=0, server_default="0")
    next_attempt_at: Mapped[dt.datetime | None]
    phase_entered_at: Mapped[CreatedAt]
    host_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("hosts.id", ondelete="RESTRICT"))
    """The host holding the environment's claims, while it holds any. Not indexed, so that allocation and
    release update the row in place (HOT); look environments up by host through `allocations`."""
    allocated_at: Mapped[dt.datetime | None]
    image_digest: Mapped[str | None] = mapped_column(String(80))
    """The digest the spec's image tag named when the reconciler pinned it; the pod runs `repo@digest`."""
    image_pinned_reference: Mapped[str | None] = mapped_column(String(700))
    """The tag reference `image_digest` was resolved from (a new image in the spec resolves again)."""
    image_pinned_generation: Mapped[int | None] = mapped_column(BigInteger)
    """The generation at which it was resolved (compared with `image_pull_generation`)."""
    image_pinned_at: Mapped[dt.datetime | None]

    # Lease held by a reconciler worker.
    shard: Mapped[int] = mapped_column(default=0, server_default="0")
    lock_token: Mapped[uuid.UUID | None]
    lock_expires_at: Mapped[dt.datetime | None]
    lock_owner: Mapped[str | None] = mapped_column(String(128))

    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]
    deleted_at: Mapped[dt.datetime | None]
