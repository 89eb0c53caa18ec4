"""A `RegistryClient` for Harbor through its API v2.0 (`api/v2.0/swagger.yaml` of goharbor/harbor).

Harbor knows more than a plain registry: projects (which map to workspaces, and may be public), artifacts
with their tags, labels, size and push time in one listing, and robot accounts (`harbor_robots.py`). So
the catalog is read from `/api/v2.0/projects`, `…/projects/{project}/repositories` and
`…/repositories/{repository}/artifacts?with_tag=true&with_label=true`, each page by page through the
`Link` headers Harbor sends (`page`, `page_size` of at most 100). A tag is resolved through the artifact
endpoint, `…/artifacts/{tag}`.

Harbor's names: a repository is `project/rest` (`ml/vision/resnet`); in paths the rest is URL-encoded
twice (`vision%252Fresnet`), as the swagger says, because Harbor decodes it once more after routing.
Harbor's artifact size counts the manifest itself with its config and layers, and for an index the sum of
its platforms; the interface's size for an index is its largest platform, so an index's children (its
`references`) are read for theirs. Basic auth on every call; errors as in `core/registry/http.py`.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from remotegpu.core.registry import manifests
from remotegpu.core.registry.auth import RegistryCredentials
from remotegpu.core.registry.client import Artifact, ReferenceGoneError, Repository, ResolvedTag
from remotegpu.core.registry.harbor_api import API, MAX_PAGE_SIZE, pages
from remotegpu.core.registry.harbor_robots import create_pull_robot
from remotegpu.core.registry.http import DEFAULT_RETRY_DELAYS, RegistryHttp

_SIZE_CACHE_LIMIT = 4096


@dataclass(frozen=True)
class HarborProject:
    """A Harbor project: public ones may be offered to every workspace."""

    name: str
    project_id: int
    public: bool


def repository_path(repository: str) -> str:
    """`/projects/{project}/repositories/{rest, encoded twice}`; `ReferenceGoneError` for a name
    without a project (Harbor has none)."""
    project, slash, rest = repository.partition("/")
    if not slash or not project or not rest:
        raise ReferenceGoneError(f"{repository!r} is not a Harbor repository name (project/repository)")
    return f"/projects/{quote(project, safe='')}/repositories/{quote(quote(rest, safe=''), safe='')}"


class HarborClient:
    """One Harbor at `url` (`https://harbor.example.org`), read with an admin's or a robot's credentials."""

    def __init__(
        self,
        url: str,
        credentials: RegistryCredentials | None = None,
        *,
        timeout: float = 10.0,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        verify: bool | str = True,
        page_size: int = MAX_PAGE_SIZE,
    ) -> None:
        auth = httpx.BasicAuth(credentials.username, credentials.password) if credentials else None
        self._http = RegistryHttp(url, auth=auth, timeout=timeout, retry_delays=retry_delays, verify=verify)
        self.host = self._http.host
        self._page_size = min(page_size, MAX_PAGE_SIZE)
        self._sizes: dict[str, int | None] = {}
        self._sizes_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"HarborClient({self._http.base_url!r})"

    def projects(self) -> Iterator[HarborProject]:
        """Every project the credentials may see (public ones, and those they are a member of)."""
        for project in self._pages("/projects", {"with_detail": "true"}, gone=()):
            public = str((project.get("metadata") or {}).get("public", "false")).lower() == "true"
            yield HarborProject(str(project["name"]), int(project["project_id"]), public)

    def repositories(self) -> Iterator[Repository]:
        for project in self.projects():
            path = f"/projects/{quote(project.name, safe='')}/repositories"
            try:
                for repository in self._pages(path, {}):
                    yield Repository(name=str(repository["name"]), project=project.name)
            except ReferenceGoneError:
                continue  # deleted between the listings

    def artifacts(self, repository: str) -> Iterator[Artifact]:
        path = f"{repository_path(repository)}/artifacts"
        for artifact in self._pages(path, {"with_tag": "true", "with_label": "true"}):
            tags = tuple(sorted(str(t["name"]) for t in artifact.get("tags") or []))
            if not tags:
                continue
            yield Artifact(
                repository=repository,
                digest=str(artifact["digest"]),
                tags=tags,
                size_bytes=self._size(repository, artifact),
                labels=tuple(sorted(str(label["name"]) for label in artifact.get("labels") or [])),
                pushed_at=_timestamp(artifact.get("push_time")),
            )

    def resolve(self, repository: str, tag: str) -> ResolvedTag:
        artifact = self._artifact(repository, tag)
        return ResolvedTag(
            digest=str(artifact["digest"]),
            size_bytes=self._size(repository, artifact),
            media_type=str(artifact.get("manifest_media_type") or ""),
        )

    def create_robot(self, project: str, name: str, *, duration_days: int = -1) -> RegistryCredentials:
        """A robot account that may pull from `project`: its full name (`robot$<project>+<name>`) and
        secret. Creating one that exists gives it a new secret (Harbor shows a secret only once)."""
        return create_pull_robot(self._http, project, name, duration_days=duration_days)

    def close(self) -> None:
        self._http.close()

    # -- artifacts ---------------------------------------------------------------------------------
    def _artifact(self, repository: str, reference: str) -> dict[str, Any]:
        if not reference or "/" in reference or "?" in reference:
            raise ReferenceGoneError(f"{reference!r} is not a valid tag or digest")
        path = f"{API}{repository_path(repository)}/artifacts/{quote(reference, safe=':')}"
        body = self._http.get(path, params={"with_tag": "false"}).json()
        if not isinstance(body, dict) or "digest" not in body:
            raise ReferenceGoneError(f"registry {self.host}: no artifact {repository}:{reference}")
        return body

    def _size(self, repository: str, artifact: dict[str, Any]) -> int | None:
        """Harbor's size of an image; the largest platform's for an index."""
        if artifact.get("manifest_media_type") not in manifests.INDEX_TYPES:
            size = artifact.get("size")
            return size if isinstance(size, int) else None
        key = f"{repository}@{artifact['digest']}"
        with self._sizes_lock:
            if key in self._sizes:
                return self._sizes[key]
        sizes = []
        for reference in artifact.get("references") or []:
            try:
                child = self._artifact(repository, str(reference["child_digest"]))
            except ReferenceGoneError:
                continue
            sizes.append(self._size(repository, child))
        known = [s for s in sizes if s is not None]
        size = max(known) if known else None
        with self._sizes_lock:
            if len(self._sizes) >= _SIZE_CACHE_LIMIT:
                self._sizes.pop(next(iter(self._sizes)))
            self._sizes[key] = size
        return size

    def _pages(
        self, path: str, params: dict[str, str], gone: tuple[int, ...] = (404,)
    ) -> Iterator[dict[str, Any]]:
        return pages(self._http, path, params, page_size=self._page_size, gone=gone)


def _timestamp(value: object) -> dt.datetime | None:
    """Harbor's `date-time` (`2024-05-01T12:00:00.123Z`) as aware UTC; None if absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.astimezone(dt.UTC) if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
