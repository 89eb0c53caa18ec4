"""Stamp every row a reconciler writes with its shard and fencing epoch (the fenced-write audit's input).

The `stamp_writer` trigger (migration 0015) reads the session setting `remotegpu.writer`. Setting it per
transaction would cost a round trip per step; instead each pooled connection is set when it is checked
out with a value other than the one it holds, which happens once per connection per takeover. The
setting is committed at once: `SET` is transactional, and a step that rolls back (fenced out, say) would
otherwise undo it behind the cache's back.

A replica that lost leadership keeps stamping its old epoch: a write it makes after a newer term began
is exactly what the audit must see.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, event

SETTING = "remotegpu.writer"
_CACHE_KEY = "remotegpu_writer"


def writer_value(shard: int, epoch: int) -> str:
    """The setting's value: "shard:epoch", or empty (no stamp) before this replica ever led (epoch 0)."""
    return f"{shard}:{epoch}" if epoch > 0 else ""


def stamp_writes(engine: Engine, current: Callable[[], str]) -> None:
    """Make every connection `engine` hands out carry `current()` as its writer stamp."""

    @event.listens_for(engine, "checkout")
    def _stamp(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        value = current()
        if record.info.get(_CACHE_KEY) == value:
            return
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SELECT set_config(%s, %s, false)", (SETTING, value))
        dbapi_connection.commit()
        record.info[_CACHE_KEY] = value
