"""Secrets of the built-in secrets store, encrypted; `core.secrets.builtin` is their only reader and writer."""

from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey, Index, LargeBinary, String, text
from sqlalchemy.orm import Mapped, mapped_column

from remotegpu.core.models.base import Base, CreatedAt, UpdatedAt, UuidPk


class StoredSecret(Base):
    """One secret value, Fernet-encrypted with the current `secrets_key` (an older key still decrypts
    until `remotegpu secrets rotate` has re-encrypted the row). No column holds the value in the clear."""

    __tablename__ = "secrets"
    __table_args__ = (
        # A NULL workspace_id is the platform scope; two partial indexes keep names unique per scope.
        Index(
            "uq_secrets_workspace_id_name",
            "workspace_id",
            "name",
            unique=True,
            postgresql_where=text("workspace_id IS NOT NULL"),
        ),
        Index("uq_secrets_platform_name", "name", unique=True, postgresql_where=text("workspace_id IS NULL")),
    )

    id: Mapped[UuidPk]
    workspace_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    """The owning workspace; NULL for platform secrets."""
    name: Mapped[str] = mapped_column(String(128))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    """A Fernet token of the value's bytes."""
    is_text: Mapped[bool]
    """Whether the value was written as `str` (it is read back as one)."""
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]
