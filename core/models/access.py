"""Access endpoints: how a user reaches a running environment."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import ForeignKey, Index, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from remotegpu.core.environments.states import AccessKind
from remotegpu.core.models.base import Base, CreatedAt, UuidPk, WriterStamped, enum_type


class AccessEndpoint(WriterStamped, Base):
    """An SSH command, Jupyter URL or gateway link; created when Running, removed on stop."""

    __tablename__ = "access_endpoints"
    __table_args__ = (
        Index(
            "uq_access_endpoints_environment_id_kind_live",
            "environment_id",
            "kind",
            unique=True,
            postgresql_where=text("removed_at IS NULL"),
        ),
    )

    id: Mapped[UuidPk]
    environment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("environments.id", ondelete="RESTRICT"))
    kind: Mapped[AccessKind] = mapped_column(enum_type(AccessKind, "kind"))
    port_mapping_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("port_mappings.id", ondelete="SET NULL")
    )
    url: Mapped[str] = mapped_column(Text)
    """Where to go: `ssh://…`, `https://…`; never carries a secret (tokens live in the secrets store)."""
    command: Mapped[str | None] = mapped_column(Text)
    """A ready-to-paste command, e.g. `ssh -p 30022 user@host`."""
    created_at: Mapped[CreatedAt]
    removed_at: Mapped[dt.datetime | None]
