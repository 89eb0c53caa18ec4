"""The capacity queue as the last scheduling pass published it, in buckets of environments.

A waiting environment's place moves whenever the head moves, so storing it on the environment's row
made every pass rewrite thousands of wide rows. The pass writes its whole ordering into a fixed number
of narrow rows instead (parallel arrays per bucket), and readers find an environment's place in its
bucket (`core.capacity.queue_places`): a bucket holds a few dozen entries, so reading one place never
reads the whole queue.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import CheckConstraint, DateTime, Integer, SmallInteger, Text, Uuid
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from remotegpu.core.models.base import Base, WriterStamped


class QueueBucket(WriterStamped, Base):
    """The environments of one bucket the last pass left waiting, in queue order, with place and reason.

    An environment's bucket is the last byte of its id (`queue_places.BUCKET_SQL`); every pass publishes
    all buckets, and rewrites those that changed. Entry `i` of each array describes the same environment, and holds only while that
    environment is still in the phase the pass saw it in (`entered_at` is that phase's
    `phase_entered_at`): one placed, stopped or re-queued since has no place until the next pass.
    """

    __tablename__ = "queue_buckets"
    __table_args__ = (
        CheckConstraint("bucket BETWEEN 0 AND 255", name="bucket_range"),
        CheckConstraint(
            "cardinality(entered_at) = cardinality(environment_ids)"
            " AND cardinality(positions) = cardinality(environment_ids)"
            " AND cardinality(reasons) = cardinality(environment_ids)",
            name="arrays_aligned",
        ),
    )

    bucket: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    environment_ids: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(Uuid()))
    entered_at: Mapped[list[dt.datetime]] = mapped_column(ARRAY(DateTime(timezone=True)))
    """When each environment entered the phase it waited in, as the pass read it."""
    positions: Mapped[list[int | None]] = mapped_column(ARRAY(Integer()))
    """1-based place in the whole queue; NULL for one that waits for something other than room (quota,
    budget)."""
    reasons: Mapped[list[str]] = mapped_column(ARRAY(Text()))
    """Why each waits, in words (`waiting for 2×H100`)."""
    published_at: Mapped[dt.datetime]
    """When the pass that last changed it read the queue (a pass leaves an unchanged bucket alone)."""
