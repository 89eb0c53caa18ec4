"""Catalog sync: make the catalog's entries of one configured registry match what the registry holds.

Read, then write, never both at once: every registry call happens with no database session open (the
configuration was read before, by the caller), and the result is written in one short transaction.
Each tag of each artifact of each repository that a project mapping covers becomes one entry, public or
in its workspace's private catalog, with its digest, size, labels and last push; an entry this registry
gave before and that the registry no longer holds is marked gone (kept, so environments using it keep
running and new ones are refused by name). A registry that fails mid-read changes no entry — a
registry that is down must not empty the catalog — and only records why.

Idempotent and crash-safe: a second sync of an unchanged registry writes the same values; a sync
killed before its commit leaves the catalog as it was. Two syncs of one registry (the leader's job and
an admin's `remotegpu images sync`) serialise on an advisory lock in the write.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, text

from remotegpu.core.platform import clock
from remotegpu.core.platform.locks import LockNamespace, lock_key, xact_lock
from remotegpu.core.registry.client import (
    Artifact,
    ReferenceGoneError,
    RegistryAuthError,
    RegistryClient,
    RegistryUnavailableError,
)
from remotegpu.core.registry.configured import RegistryConfig
from remotegpu.core.registry.directory import RegistryDirectory

log = logging.getLogger(__name__)

Guard = Callable[[Connection], None]
"""Runs first in the write transaction; the reconciler passes its fencing check."""


@dataclass(frozen=True)
class CatalogEntry:
    """One tag as the catalog will hold it; `workspace_id` None: public."""

    repository: str
    tag: str
    digest: str
    size_bytes: int | None
    labels: tuple[str, ...]
    pushed_at: dt.datetime | None
    workspace_id: uuid.UUID | None


@dataclass(frozen=True)
class SyncReport:
    """What one sync of one registry did."""

    registry: str
    images: int = 0
    """Entries the registry holds now (inserted or refreshed)."""
    gone: int = 0
    """Entries newly marked gone."""
    error: str | None = None
    """Why the sync read nothing (the registry down, credentials refused); nothing was changed."""


def read_registry(config: RegistryConfig, client: RegistryClient) -> list[CatalogEntry]:
    """Every mapped tag at the registry (no session open). A repository deleted while it is read is
    simply not there; an outage or refused credentials raise."""
    entries: list[CatalogEntry] = []
    for repository in client.repositories():
        mapping = config.mapping_for(repository.name)
        if mapping is None:
            continue
        try:
            artifacts: list[Artifact] = list(client.artifacts(repository.name))
        except ReferenceGoneError:
            continue
        for artifact in artifacts:
            for tag in artifact.tags:
                entries.append(
                    CatalogEntry(
                        repository.name,
                        tag,
                        artifact.digest,
                        artifact.size_bytes,
                        tuple(artifact.labels),
                        artifact.pushed_at,
                        mapping.workspace_id,
                    )
                )
    return entries


def sync_registry(
    engine: Engine, config: RegistryConfig, client: RegistryClient, *, guard: Guard | None = None
) -> SyncReport:
    """Read the registry, then write its entries and mark the missing ones gone (one transaction)."""
    try:
        entries = read_registry(config, client)
    except (RegistryUnavailableError, RegistryAuthError) as error:
        return _record_failure(engine, config, error, guard)
    with engine.begin() as connection:
        if guard is not None:
            guard(connection)
        report = write_entries(connection, config, entries)
    log.info("Catalog synced", extra={"registry": config.name, "images": report.images, "gone": report.gone})
    return report


def _record_failure(
    engine: Engine, config: RegistryConfig, error: Exception, guard: Guard | None
) -> SyncReport:
    """Nothing was read: the entries stay as they are; the registry says why."""
    message = str(error)  # the clients' messages name the registry and the call, never a credential
    log.warning("Catalog sync failed", extra={"registry": config.name, "error": message})
    with engine.begin() as connection:
        if guard is not None:
            guard(connection)
        connection.execute(
            text("UPDATE registries SET last_sync_error = :error WHERE id = :id"),
            {"id": config.id, "error": message[:2000]},
        )
    return SyncReport(config.name, error=message)


_UPSERT_COLUMNS = (
    "SELECT * FROM unnest(CAST(:repositories AS text[]), CAST(:tags AS text[]), CAST(:digests AS text[]),"
    " CAST(:sizes AS bigint[]), CAST(:labels AS jsonb[]), CAST(:pushed AS timestamptz[]),"
    " CAST(:owners AS uuid[]))"
)
_UPSERT_SQL = {
    public: text(
        f"""
        INSERT INTO images AS i (name, registry_host, repository, tag, digest, size_bytes, labels, pushed_at,
                                 visibility, owner_workspace_id, source, registry_id, synced_at, gone_at)
        SELECT t.repository || ':' || t.tag, :host, t.repository, t.tag, t.digest, t.size, t.labels, t.pushed,
               :visibility, t.owner, :source, :registry, :now, NULL
          FROM ({_UPSERT_COLUMNS}) AS t(repository, tag, digest, size, labels, pushed, owner)
         WHERE (t.owner IS NULL) = :public
        ON CONFLICT {conflict} DO UPDATE SET
            digest = EXCLUDED.digest, size_bytes = EXCLUDED.size_bytes, labels = EXCLUDED.labels,
            pushed_at = EXCLUDED.pushed_at, source = EXCLUDED.source, registry_id = EXCLUDED.registry_id,
            synced_at = EXCLUDED.synced_at, gone_at = NULL, updated_at = now()
        RETURNING i.id
        """
    )
    for public, conflict in (
        (True, "(registry_host, repository, tag) WHERE visibility = 'public'"),
        (False, "(owner_workspace_id, registry_host, repository, tag) WHERE visibility = 'private'"),
    )
}
_GONE_SQL = text(
    "UPDATE images SET gone_at = :now, updated_at = now()"
    " WHERE registry_id = :registry AND gone_at IS NULL AND NOT (id = ANY(CAST(:seen AS uuid[])))"
)


def write_entries(connection: Connection, config: RegistryConfig, entries: list[CatalogEntry]) -> SyncReport:
    """The registry's entries, upserted; this registry's other entries marked gone; the sync recorded.
    Serialised per registry by an advisory lock."""
    xact_lock(connection, lock_key(LockNamespace.REGISTRY_SYNC, config.id))
    now = clock.now()
    columns = {
        "repositories": [e.repository for e in entries],
        "tags": [e.tag for e in entries],
        "digests": [e.digest for e in entries],
        "sizes": [e.size_bytes for e in entries],
        "labels": [json.dumps(list(e.labels)) for e in entries],
        "pushed": [e.pushed_at for e in entries],
        "owners": [e.workspace_id for e in entries],
    }
    seen: list[uuid.UUID] = []
    for public, statement in _UPSERT_SQL.items():
        rows = connection.execute(
            statement,
            {
                **columns,
                "public": public,
                "visibility": "public" if public else "private",
                "host": config.host,
                "source": config.kind,
                "registry": config.id,
                "now": now,
            },
        )
        seen += rows.scalars()
    gone = connection.execute(_GONE_SQL, {"registry": config.id, "now": now, "seen": seen}).rowcount
    connection.execute(
        text("UPDATE registries SET last_synced_at = :now, last_sync_error = NULL WHERE id = :id"),
        {"id": config.id, "now": now},
    )
    return SyncReport(config.name, len(seen), gone)


def sync_catalog(
    engine: Engine, directory: RegistryDirectory, *, registry: str | None = None, guard: Guard | None = None
) -> list[SyncReport]:
    """Sync every configured registry (or the one named), one after the other; one that fails does not
    stop the others. The configurations are read fresh."""
    directory.refresh()
    reports: list[SyncReport] = []
    for config in directory.registries():
        if registry is not None and config.name != registry:
            continue
        try:
            client = directory.client(config)
        except (RegistryUnavailableError, RegistryAuthError) as error:
            reports.append(_record_failure(engine, config, error, guard))
            continue
        try:
            reports.append(sync_registry(engine, config, client, guard=guard))
        finally:
            client.close()
    return reports
