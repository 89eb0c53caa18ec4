"""Users' SSH public keys; `core.accounts.ssh_keys` is their only writer."""

from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from remotegpu.core.models.base import Base, CreatedAt, UuidPk


class SshKey(Base):
    """One OpenSSH public key of a user, authorised in the environments that user may reach by SSH.

    Public keys are not secrets; the private half is never sent to the platform (a pasted private key
    is refused before anything is stored).
    """

    __tablename__ = "ssh_keys"
    __table_args__ = (UniqueConstraint("user_id", "fingerprint"),)

    id: Mapped[UuidPk]
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    """The key's comment, or the name the user gave it."""
    key_type: Mapped[str] = mapped_column(String(64))
    public_key: Mapped[str] = mapped_column(Text)
    """Normalised `type base64 [comment]`, one line: what goes into `authorized_keys`."""
    fingerprint: Mapped[str] = mapped_column(String(64))
    """`SHA256:<unpadded base64>`, as `ssh-keygen -lf` prints it."""
    created_at: Mapped[CreatedAt]
