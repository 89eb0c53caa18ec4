"""The append-only event and audit log: transitions, allocations, API mutations, with actor and reason."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Identity, Index, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from remotegpu.core.environments.states import ActorKind
from remotegpu.core.models.base import Base, UuidPk, WriterStamped, enum_type


class Event(WriterStamped, Base):
    """One thing that happened; a trigger refuses UPDATE and DELETE."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_environment_id_seq", "environment_id", "seq"),
        Index("ix_events_workspace_id_seq", "workspace_id", "seq"),
    )

    id: Mapped[UuidPk]
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), unique=True)
    """Insertion order, for stable pagination."""
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.clock_timestamp())
    actor_kind: Mapped[ActorKind] = mapped_column(enum_type(ActorKind, "actor_kind"))
    actor_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    workspace_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("workspaces.id", ondelete="RESTRICT"))
    environment_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("environments.id", ondelete="RESTRICT")
    )
    host_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("hosts.id", ondelete="RESTRICT"))
    kind: Mapped[str] = mapped_column(String(64))
    """What happened, e.g. `transition`, `allocation`, `api`."""
    reason: Mapped[str] = mapped_column(String(128))
    """Short machine-readable cause, e.g. `Scheduled`, `ImagePullBackOff`."""
    message: Mapped[str] = mapped_column(Text, default="", server_default="")
    data: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
