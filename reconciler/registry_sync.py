"""The catalog sync, a leader job: every `registry_sync_seconds`, each configured registry's catalog
entries are made to match the registry (`core.catalog.sync`), the write fenced by the leader's epoch.

Registries are not per shard, so only the leader of shard 0 runs it. An admin's `remotegpu images
sync` runs the same sync through the API; the two serialise per registry on an advisory lock.
"""

from __future__ import annotations

from sqlalchemy import Connection

from remotegpu.core.catalog.sync import SyncReport, sync_catalog
from remotegpu.reconciler.context import ReconcilerContext
from remotegpu.reconciler.leader import fence

REGISTRY_SYNC_SHARD = 0
"""The shard whose leader syncs the catalog."""


def registry_sync_tick(ctx: ReconcilerContext) -> list[SyncReport]:
    """One sync of every configured registry; nothing without a registry directory."""
    if ctx.shard != REGISTRY_SYNC_SHARD or ctx.registries is None:
        return []

    def fenced(connection: Connection) -> None:
        fence(connection, ctx.shard, ctx.epoch)

    return sync_catalog(ctx.engine, ctx.registries, guard=fenced)
