"""Users and the API tokens the CLI uses."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from remotegpu.core.environments.states import UserRole
from remotegpu.core.models.base import Base, CreatedAt, UpdatedAt, UuidPk, enum_type


class User(Base):
    """A person who signs in; a disabled user can do nothing."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("email = lower(email) AND position('@' in email) > 1", name="email_normalised"),
        CheckConstraint("length(username) >= 2", name="username_length"),
    )

    id: Mapped[UuidPk]
    email: Mapped[str] = mapped_column(String(320), unique=True)
    """Lower-cased e-mail address; unique."""
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    """Argon2 hash; the password itself is never stored."""
    role: Mapped[UserRole] = mapped_column(
        enum_type(UserRole, "role"), default=UserRole.USER, server_default=UserRole.USER.value
    )
    disabled: Mapped[bool] = mapped_column(default=False, server_default="false")
    display_name: Mapped[str | None] = mapped_column(String(128))
    """How the user wants to be called in the console and at gateways; the username when unset."""
    token_generation: Mapped[int] = mapped_column(default=0, server_default="0")
    """Carried by every access and refresh token issued; a password change or reset increments it, so
    every token issued before stops working at once (the API token used for the change survives)."""
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]


class PasswordReset(Base):
    """A one-time password reset a platform admin issued: only the token's SHA-256 is stored."""

    __tablename__ = "password_resets"

    id: Mapped[UuidPk]
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    issued_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[CreatedAt]
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]


class ApiToken(Base):
    """A long-lived token for the CLI; only its SHA-256 hash is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[UuidPk]
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    """Hex SHA-256 of the token; the token is shown once, at creation."""
    token_prefix: Mapped[str] = mapped_column(String(16))
    """First characters of the token, so a user can tell tokens apart."""
    created_at: Mapped[CreatedAt]
    expires_at: Mapped[dt.datetime | None]
    last_used_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]
