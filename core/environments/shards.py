"""Which reconciler shard an environment belongs to: the first 32 bits of its id, modulo the shards.

The leader of shard 0 owns the capacity queue, so it assigns the shard when it admits an environment
(`SHARD_OF_SQL` in the admission statement) and moves environments when the number of shards changed
(`rebalance`). An environment moving between shards is safe at any moment: the lease token, not the
shard, decides who may work on it, and each write is fenced by its writer's own shard.
"""

from __future__ import annotations

import uuid

from sqlalchemy import Connection, text

from remotegpu.core.environments.states import Phase


def shard_of(environment_id: uuid.UUID, shards: int) -> int:
    """The shard of `environment_id` among `shards` (the same as `SHARD_OF_SQL`)."""
    return int(environment_id.hex[:8], 16) % shards


def shard_of_sql(column: str) -> str:
    """SQL computing `shard_of` for the uuid `column`, with the parameter `:shards`."""
    return f"mod(CAST(CAST(('x' || left(replace(CAST({column} AS text), '-', ''), 8)) AS bit(32)) AS bigint), :shards)"


SHARD_OF_SQL = shard_of_sql("id")

_REBALANCE_SQL = text(
    f"""
    UPDATE environments SET shard = {SHARD_OF_SQL}
     WHERE phase <> '{Phase.DELETED}' AND shard <> {SHARD_OF_SQL}
    """
)


def rebalance(connection: Connection, shards: int) -> int:
    """Give every live environment the shard `shards` makes it belong to; returns how many moved. One
    scan of the table: the leader of shard 0 runs it when its term begins (the number of shards is not
    reloadable, so it only changes across restarts)."""
    return connection.execute(_REBALANCE_SQL, {"shards": shards}).rowcount
