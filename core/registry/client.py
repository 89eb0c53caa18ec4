"""The registry interface: what catalog sync and digest pinning ask of an OCI registry or of Harbor.

Both clients read the same things — repositories, their artifacts (tags, digest, size, labels, last
push) and the digest a tag names now — so the catalog sync and the reconciler's pinning step never know
which product they talk to. Errors the next attempt may not see (the registry down, a 5xx, a 429, a
connection error) raise `RegistryUnavailableError`, retried with backoff by the caller; a repository or
tag that does not exist raises `ReferenceGoneError`. Messages name the registry and the call, never a
password or token.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol


class RegistryUnavailableError(Exception):
    """The registry could not answer now (unreachable, 5xx, 429): retry later."""


class ReferenceGoneError(Exception):
    """The repository or tag does not exist (any more) at the registry."""


class RegistryAuthError(Exception):
    """The registry refused our credentials: an admin must fix them (not retried)."""


@dataclass(frozen=True)
class Repository:
    """A repository as the registry lists it; `project` is Harbor's project (the first path segment
    for a plain OCI registry), which maps a repository to a workspace."""

    name: str
    """The repository path at the registry, e.g. `ml/pytorch`."""
    project: str


@dataclass(frozen=True)
class Artifact:
    """One manifest (or index) of a repository, with every tag that names it."""

    repository: str
    digest: str
    """`sha256:…`, from `Docker-Content-Digest` (or Harbor's artifact digest)."""
    tags: tuple[str, ...]
    size_bytes: int | None
    """Config plus layers of the manifest; for an index, of its largest platform manifest."""
    labels: tuple[str, ...] = ()
    pushed_at: dt.datetime | None = None


@dataclass(frozen=True)
class ResolvedTag:
    """What a tag names now."""

    digest: str
    size_bytes: int | None
    media_type: str


class RegistryClient(Protocol):
    """One registry, with the credentials it was built with."""

    host: str
    """The registry's host[:port] as image references name it."""

    def repositories(self) -> Iterator[Repository]:
        """Every repository the credentials may read (all pages)."""
        ...

    def artifacts(self, repository: str) -> Iterator[Artifact]:
        """Every tagged artifact of a repository (all pages); `ReferenceGoneError` if it is gone."""
        ...

    def resolve(self, repository: str, tag: str) -> ResolvedTag:
        """The digest `tag` names now (a manifest HEAD); `ReferenceGoneError` if there is none."""
        ...

    def close(self) -> None:
        """Release the HTTP connections."""
        ...
