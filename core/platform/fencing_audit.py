"""The fenced-write audit: no row was written by a leader after a newer leader of its shard began.

Every table the reconciler writes carries a writer stamp (shard, epoch, server clock; migration 0015) and
`leader_terms` records when each epoch began, read after the takeover held the shard row, so a write
fenced at an older epoch always committed before it. A row stamped with epoch `e` and written after the
term `e + 1` (or later) began is a write a fenced-out leader got through: the fence was bypassed.

A row keeps its last reconciler stamp only, so the audit sees the last write to each row; the tables
that matter most for it (claim history, billing intervals, events) are append-only.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from remotegpu.core.models.base import Base, WriterStamped


def stamped_tables() -> list[str]:
    """The tables whose rows carry a writer stamp, from the models."""
    return sorted(
        mapper.local_table.name  # type: ignore[attr-defined]
        for mapper in Base.registry.mappers
        if issubclass(mapper.class_, WriterStamped)
    )


_LATE_WRITES = """
    SELECT '{table}' AS table_name, r.writer_shard, r.writer_epoch, r.written_at, t.epoch AS newer_epoch,
           t.began_at AS newer_began_at
      FROM {table} r
      JOIN LATERAL (
            SELECT epoch, began_at FROM leader_terms t
             WHERE t.shard = r.writer_shard AND t.epoch > r.writer_epoch AND t.began_at <= r.written_at
             ORDER BY t.epoch LIMIT 1) t ON true
     WHERE r.writer_epoch IS NOT NULL
"""


def late_writes(connection: Connection, limit: int = 20) -> list[str]:
    """One line per row written at an epoch after a newer epoch of its shard began (at most `limit`)."""
    found: list[str] = []
    for table in stamped_tables():
        for row in connection.execute(text(_LATE_WRITES.format(table=table) + f" LIMIT {int(limit)}")):
            found.append(
                f"{row.table_name}: a write of shard {row.writer_shard} epoch {row.writer_epoch} at"
                f" {row.written_at.isoformat()} landed after epoch {row.newer_epoch} began at"
                f" {row.newer_began_at.isoformat()}"
            )
    return found[:limit]


def stamped_rows(connection: Connection) -> int:
    """How many rows carry a reconciler's stamp (the audit's coverage, printed by chaos runs)."""
    return sum(
        int(
            connection.execute(
                text(f"SELECT count(*) FROM {table} WHERE writer_epoch IS NOT NULL")
            ).scalar_one()
        )
        for table in stamped_tables()
    )
