"""The registries an admin configured: read as plain values, and written (with the audit) by admins.

A `RegistryConfig` is what a catalog sync or the pinning step needs about one registry: its kind, URL,
the host image references name, and which workspace each project (or repository path) belongs to.
`put_registry` replaces a registry's whole configuration (idempotent: the same document twice changes
nothing the second time); `remove_registry` forgets it and marks its images gone.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, text

from remotegpu.core.accounts.users import Principal
from remotegpu.core.platform.errors import ConflictError, InvalidInputError, NotFoundError
from remotegpu.core.platform.events import record_mutation

KINDS = ("oci", "harbor")
_PATH = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
"""A project or repository path as the distribution spec allows repository names (lower case)."""


@dataclass(frozen=True)
class ProjectMapping:
    """A project or repository path and the workspace that sees it (None: every workspace)."""

    id: uuid.UUID
    path: str
    workspace_id: uuid.UUID | None
    workspace: str | None = None


@dataclass(frozen=True)
class RegistryConfig:
    """One configured registry; no credential is held here."""

    id: uuid.UUID
    name: str
    kind: str
    url: str
    host: str
    projects: tuple[ProjectMapping, ...] = ()

    def mapping_for(self, repository: str) -> ProjectMapping | None:
        """The mapping covering `repository`: the longest path equal to it or a prefix of it by whole
        segments; None when no mapping covers it (the repository is not synced)."""
        covering = [m for m in self.projects if repository == m.path or repository.startswith(m.path + "/")]
        return max(covering, key=lambda m: len(m.path), default=None)


_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(:[0-9]{1,5})?$")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def check_registry_name(name: str) -> str:
    """A registry's name is a DNS label (it names its pull Secrets); InvalidInputError otherwise."""
    if not _NAME.match(name):
        raise InvalidInputError("name", "a registry name is a DNS label: lower-case letters, digits and '-'")
    return name


def host_of(url: str) -> str:
    """host[:port] of a registry URL, as image references name it."""
    return urlsplit(url).netloc


def check_url(url: str) -> str:
    """The URL without a trailing slash; InvalidInputError naming `$.url` when it is not http(s)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parses the port: a bad one raises here, not later
    except ValueError:
        raise InvalidInputError("$.url", "not a URL; write e.g. https://harbor.example.org") from None
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise InvalidInputError("$.url", "write the registry's base URL, e.g. https://harbor.example.org")
    if "@" in parts.netloc:
        raise InvalidInputError("$.url", "no user or password in the URL; set credentials separately")
    return url.rstrip("/")


_LOAD_SQL = text(
    """
    SELECT r.id, r.name, r.kind, r.url, r.host,
           coalesce((SELECT json_agg(json_build_array(p.id, p.path, p.workspace_id, w.name) ORDER BY p.path)
                       FROM registry_projects p LEFT JOIN workspaces w ON w.id = p.workspace_id
                      WHERE p.registry_id = r.id), '[]') AS projects,
           r.last_synced_at, r.last_sync_error
      FROM registries r
     WHERE (CAST(:name AS text) IS NULL OR r.name = :name)
     ORDER BY r.name
    """
)


def _config(row: Any) -> RegistryConfig:
    projects = tuple(
        ProjectMapping(uuid.UUID(i), p, uuid.UUID(w) if w else None, n) for i, p, w, n in row.projects
    )
    return RegistryConfig(row.id, row.name, row.kind, row.url, row.host, projects)


def load_registries(connection: Connection) -> list[RegistryConfig]:
    """Every configured registry, by name."""
    return [_config(row) for row in connection.execute(_LOAD_SQL, {"name": None})]


def registry_rows(connection: Connection, name: str | None = None) -> list[tuple[RegistryConfig, Any]]:
    """Configured registries with their sync status row (`last_synced_at`, `last_sync_error`)."""
    return [(_config(row), row) for row in connection.execute(_LOAD_SQL, {"name": name})]


def get_registry(connection: Connection, name: str) -> RegistryConfig:
    """One registry by name; NotFoundError naming the command that lists them."""
    found = registry_rows(connection, name)
    if not found:
        raise NotFoundError(f"registry {name!r} is not configured; see `remotegpu registry list`")
    return found[0][0]


@dataclass(frozen=True)
class RegistryDocument:
    """A registry's configuration as an admin writes it (`PUT /registries/{name}`)."""

    kind: str
    url: str
    public: Sequence[str] = ()
    """Project or repository paths every workspace sees."""
    workspaces: Mapping[str, str] = field(default_factory=dict)
    """Project or repository path → the workspace (name or id) whose private catalog it joins."""
    host: str | None = None


def _check_paths(document: RegistryDocument) -> dict[str, str | None]:
    wanted: dict[str, str | None] = {}
    for index, path in enumerate(document.public):
        if not _PATH.match(path):
            raise InvalidInputError(
                f"$.public[{index}]", "a project or repository path, e.g. `ml` or `ml/pytorch`"
            )
        wanted[path] = None
    for path, workspace in document.workspaces.items():
        if not _PATH.match(path):
            raise InvalidInputError(
                f"$.workspaces[{path!r}]", "each key is a project or repository path, e.g. `ml`"
            )
        if path in wanted:
            raise InvalidInputError(
                f"$.workspaces[{path!r}]", "is also in `public`; a path is public or one workspace's"
            )
        wanted[path] = workspace
    return wanted


def put_registry(
    connection: Connection, principal: Principal, name: str, document: RegistryDocument
) -> RegistryConfig:
    """Create or replace a registry's configuration (platform admins). Its mappings become exactly the
    document's; images of paths no longer covered are marked gone by the next sync."""
    principal.require_admin()
    check_registry_name(name)
    if document.kind not in KINDS:
        raise InvalidInputError("$.kind", f"one of {', '.join(KINDS)}")
    url = check_url(document.url)
    host = document.host or host_of(url)
    if not _HOST.match(host):
        raise InvalidInputError("$.host", "host[:port] as image references name it, e.g. harbor.example.org")
    wanted = _check_paths(document)
    workspaces = _workspace_ids(connection, {w for w in wanted.values() if w is not None})
    taken = connection.execute(
        text("SELECT name FROM registries WHERE host = :host AND name <> :name"), {"host": host, "name": name}
    ).scalar_one_or_none()
    if taken is not None:
        raise ConflictError(
            f"registry {taken} already syncs {host}; change that one, or give this one another `host`",
            "$.host",
        )
    row = connection.execute(
        text(
            "INSERT INTO registries (name, kind, url, host) VALUES (:name, :kind, :url, :host)"
            " ON CONFLICT (name) DO UPDATE SET kind = EXCLUDED.kind, url = EXCLUDED.url, host = EXCLUDED.host,"
            " updated_at = now() RETURNING id"
        ),
        {"name": name, "kind": document.kind, "url": url, "host": host},
    ).one()
    connection.execute(
        text("DELETE FROM registry_projects WHERE registry_id = :r AND NOT (path = ANY(:paths))"),
        {"r": row.id, "paths": list(wanted)},
    )
    for path, workspace in wanted.items():
        connection.execute(
            text(
                "INSERT INTO registry_projects (registry_id, path, workspace_id) VALUES (:r, :path, :w)"
                " ON CONFLICT (registry_id, path) DO UPDATE SET workspace_id = EXCLUDED.workspace_id"
            ),
            {"r": row.id, "path": path, "w": None if workspace is None else workspaces[workspace]},
        )
    record_mutation(
        connection,
        principal.user_id,
        "RegistryConfigured",
        f"registry {name} ({document.kind}, {host}) configured",
        data={"registry": name, "kind": document.kind, "url": url, "paths": sorted(wanted)},
    )
    return get_registry(connection, name)


def _workspace_ids(connection: Connection, references: set[str]) -> dict[str, uuid.UUID]:
    found: dict[str, uuid.UUID] = {}
    for reference in sorted(references):
        row = connection.execute(
            text(
                "SELECT id FROM workspaces WHERE deleted_at IS NULL"
                " AND (name = :ref OR CAST(id AS text) = :ref)"
            ),
            {"ref": reference},
        ).one_or_none()
        if row is None:
            raise InvalidInputError(
                "$.workspaces", f"no workspace {reference!r}; name an existing workspace (by name or id)"
            )
        found[reference] = row.id
    return found


def remove_registry(connection: Connection, principal: Principal, name: str) -> bool:
    """Forget a registry (platform admins): its images stay in the catalog, marked gone, so running
    environments keep them and new ones are refused. Idempotent: whether there was one."""
    principal.require_admin()
    row = connection.execute(
        text("SELECT id FROM registries WHERE name = :name"), {"name": name}
    ).one_or_none()
    if row is None:
        return False
    connection.execute(
        text("UPDATE images SET gone_at = coalesce(gone_at, now()) WHERE registry_id = :r"), {"r": row.id}
    )
    connection.execute(text("DELETE FROM registries WHERE id = :r"), {"r": row.id})  # images keep, unlinked
    record_mutation(
        connection, principal.user_id, "RegistryRemoved", f"registry {name} removed", data={"registry": name}
    )
    return True
