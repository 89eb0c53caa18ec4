"""Leader and fencing epoch of each reconciler shard."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, CheckConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from remotegpu.core.models.base import Base, UpdatedAt


class ShardLeader(Base):
    """Who leads a shard, since when, and its fencing epoch.

    The epoch increases on every takeover; every reconciler write checks it in its own transaction, so
    a stale leader that lost its lock can never write.
    """

    __tablename__ = "shard_leaders"
    __table_args__ = (CheckConstraint("shard >= 0 AND epoch >= 0", name="not_negative"),)

    shard: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    epoch: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    leader_id: Mapped[str | None] = mapped_column(String(128))
    leader_since: Mapped[dt.datetime | None]
    heartbeat_at: Mapped[dt.datetime | None]
    updated_at: Mapped[UpdatedAt]


class LeaderTerm(Base):
    """One leadership term of a shard: the epoch a takeover began, by whom and when.

    `began_at` is the server's clock read after the takeover holds the shard row, so every write fenced
    at an older epoch committed before it: the fenced-write audit compares rows' `written_at` with it.
    """

    __tablename__ = "leader_terms"

    shard: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    epoch: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    leader_id: Mapped[str] = mapped_column(String(128))
    began_at: Mapped[dt.datetime]
