"""Counters of the sign-in rate limits, shared by every API process through the database."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from remotegpu.core.models.base import Base


class SignInCounter(Base):
    """Sign-in attempts of one subject (a client address, or an account from one address) in the fixed
    window that starts at `window_start`; `core.accounts.sign_in_limits` is its only writer."""

    __tablename__ = "sign_in_counters"
    __table_args__ = (
        CheckConstraint("scope IN ('address', 'account')", name="scope_known"),
        CheckConstraint("attempts >= 1 AND window_end > window_start", name="window_valid"),
    )

    scope: Mapped[str] = mapped_column(String(16), primary_key=True)
    """`address`: every attempt from a client address; `account`: attempts at one account from one
    address since its last success."""
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    """Hex SHA-256 of the subject, so the table holds no e-mail or address in the clear."""
    window_start: Mapped[dt.datetime]
    window_end: Mapped[dt.datetime] = mapped_column(index=True)
    """When the count stops applying; rows past it are deleted by later sign-ins."""
    attempts: Mapped[int]
