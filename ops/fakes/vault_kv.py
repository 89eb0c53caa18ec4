"""The state of the fake Vault's KV v2 engine: versioned secrets with metadata, as Vault's KV v2 HTTP API
documents them (`website/content/api-docs/secret/kv/kv-v2.mdx` in hashicorp/vault).

Kept apart from the HTTP plumbing (`vault.py`) so each answer reads as the documentation states it:
every method returns `(status, data)` where `data` is the answer's `data` field, or an `Error`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

DEFAULT_MAX_VERSIONS = 10
"""Vault keeps 10 versions when neither the engine nor the key sets max_versions."""


@dataclass(frozen=True)
class Error:
    """A Vault error answer: `{"errors": messages}` with `status`, or with `body` (a 404 of a deleted
    version carries the version's metadata, which hvac reads)."""

    status: int
    messages: tuple[str, ...] = ()
    body: dict[str, Any] | None = None


NOT_FOUND = Error(404)


def rfc3339(moment: dt.datetime | None) -> str:
    """Vault's time format (`2018-03-22T02:24:06.945319Z`); "" for none, as Vault writes it."""
    if moment is None:
        return ""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class _Version:
    data: dict[str, Any] | None
    created: dt.datetime
    deleted: dt.datetime | None = None
    destroyed: bool = False

    def metadata(self, number: int, custom: dict[str, str] | None) -> dict[str, Any]:
        return {
            "created_time": rfc3339(self.created),
            "custom_metadata": custom,
            "deletion_time": rfc3339(self.deleted),
            "destroyed": self.destroyed,
            "version": number,
        }

    @property
    def readable(self) -> bool:
        return self.deleted is None and not self.destroyed


@dataclass
class _Secret:
    created: dt.datetime
    updated: dt.datetime
    versions: dict[int, _Version] = field(default_factory=dict)
    current_version: int = 0
    max_versions: int = 0
    cas_required: bool = False
    custom_metadata: dict[str, str] | None = None


class KeyValueEngine:
    """One KV v2 mount. Not thread-safe by itself: the server calls it under its lock."""

    def __init__(self) -> None:
        self._secrets: dict[str, _Secret] = {}

    def read(self, path: str, version: int, now: dt.datetime) -> tuple[int, Any] | Error:
        secret = self._secrets.get(path)
        number = version or (secret.current_version if secret else 0)
        if secret is None or number not in secret.versions:
            return NOT_FOUND
        found = secret.versions[number]
        metadata = found.metadata(number, secret.custom_metadata)
        if not found.readable:
            # Vault answers 404 with the version's metadata, so a client can tell deleted from missing.
            return Error(404, body={"data": {"data": None, "metadata": metadata}})
        return 200, {"data": found.data, "metadata": metadata}

    def write(self, path: str, body: dict[str, Any], now: dt.datetime) -> tuple[int, Any] | Error:
        data = body.get("data")
        if not isinstance(data, dict):
            return Error(400, ("no data provided",))
        options = body.get("options") or {}
        secret = self._secrets.get(path)
        cas = options.get("cas")
        if cas is None and secret is not None and secret.cas_required:
            return Error(400, ("check-and-set parameter required for this call",))
        if cas is not None and int(cas) != (secret.current_version if secret else 0):
            return Error(400, ("check-and-set parameter did not match the current version",))
        if secret is None:
            secret = self._secrets[path] = _Secret(created=now, updated=now)
        secret.current_version += 1
        secret.updated = now
        secret.versions[secret.current_version] = _Version(data=dict(data), created=now)
        keep = secret.max_versions or DEFAULT_MAX_VERSIONS
        for old in sorted(secret.versions)[:-keep]:
            del secret.versions[old]
        return 200, secret.versions[secret.current_version].metadata(
            secret.current_version, secret.custom_metadata
        )

    def delete_latest(self, path: str, now: dt.datetime) -> tuple[int, Any] | Error:
        secret = self._secrets.get(path)
        if secret is not None and secret.current_version in secret.versions:
            latest = secret.versions[secret.current_version]
            latest.deleted = latest.deleted or now
        return 204, None

    def change_versions(
        self, action: str, path: str, body: dict[str, Any], now: dt.datetime
    ) -> tuple[int, Any] | Error:
        """`delete`, `undelete` or `destroy` the versions listed in the body."""
        versions = body.get("versions")
        if not isinstance(versions, list) or not versions:
            return Error(400, ("no version number provided",))
        secret = self._secrets.get(path)
        for number in versions:
            found = secret.versions.get(int(number)) if secret else None
            if found is None:
                continue
            if action == "delete":
                found.deleted = found.deleted or now
            elif action == "undelete" and not found.destroyed:
                found.deleted = None
            elif action == "destroy":
                found.destroyed, found.data = True, None
        return 204, None

    def metadata(self, path: str) -> tuple[int, Any] | Error:
        secret = self._secrets.get(path)
        if secret is None:
            return NOT_FOUND
        return 200, {
            "cas_required": secret.cas_required,
            "created_time": rfc3339(secret.created),
            "current_version": secret.current_version,
            "custom_metadata": secret.custom_metadata,
            "delete_version_after": "0s",
            "max_versions": secret.max_versions,
            "oldest_version": min(secret.versions, default=0),
            "updated_time": rfc3339(secret.updated),
            "versions": {
                str(number): {
                    "created_time": rfc3339(version.created),
                    "deletion_time": rfc3339(version.deleted),
                    "destroyed": version.destroyed,
                }
                for number, version in sorted(secret.versions.items())
            },
        }

    def update_metadata(self, path: str, body: dict[str, Any], now: dt.datetime) -> tuple[int, Any] | Error:
        secret = self._secrets.get(path)
        if secret is None:
            secret = self._secrets[path] = _Secret(created=now, updated=now)
        if "max_versions" in body:
            secret.max_versions = int(body["max_versions"])
        if "cas_required" in body:
            secret.cas_required = bool(body["cas_required"])
        if "custom_metadata" in body:
            secret.custom_metadata = dict(body["custom_metadata"] or {}) or None
        secret.updated = now
        return 204, None

    def delete_metadata(self, path: str) -> tuple[int, Any] | Error:
        self._secrets.pop(path, None)
        return 204, None

    def list(self, folder: str) -> tuple[int, Any] | Error:
        """Names directly in `folder`; deeper ones as their first segment with a trailing `/`."""
        prefix = folder.strip("/") + "/" if folder.strip("/") else ""
        keys: set[str] = set()
        for path in self._secrets:
            if path.startswith(prefix):
                first, slash, _ = path[len(prefix) :].partition("/")
                keys.add(first + slash)
        if not keys:
            return NOT_FOUND
        return 200, {"keys": sorted(keys)}
