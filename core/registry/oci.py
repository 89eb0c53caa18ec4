"""A `RegistryClient` for any OCI Distribution registry (Distribution/"registry:2", Harbor's, GitLab's, …).

Repositories come from `/v2/_catalog` and tags from `/v2/<name>/tags/list`, both followed page by page
through their `Link` headers. A tag's digest comes from a manifest HEAD (`Docker-Content-Digest`; the
sha256 of a GET's body where a registry leaves the header out). Sizes need the manifest's body: it is
fetched by digest once and remembered, since what a digest names never changes, so a repeated resolve or
sync costs one HEAD per tag. Authentication answers the registry's challenge: Basic or a
Bearer token from the registry's token endpoint (`tokens.py`).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator, Sequence

import httpx

from remotegpu.core.registry import manifests
from remotegpu.core.registry.auth import RegistryCredentials
from remotegpu.core.registry.client import (
    Artifact,
    ReferenceGoneError,
    Repository,
    ResolvedTag,
)
from remotegpu.core.registry.http import DEFAULT_RETRY_DELAYS, RegistryHttp, next_link
from remotegpu.core.registry.tokens import TokenAuth

# The distribution spec's grammar: path components of lower-case alphanumerics joined by separators.
_REPOSITORY = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[A-Za-z0-9=_-]+")
_SIZE_CACHE_LIMIT = 4096


def project_of(repository: str) -> str:
    """The first path segment (`ml` of `ml/pytorch`); "" for a single-segment name such as `ubuntu`."""
    head, slash, _ = repository.partition("/")
    return head if slash else ""


class OciRegistryClient:
    """One OCI Distribution registry at `url` (`https://registry.example.org`), read with `credentials`."""

    def __init__(
        self,
        url: str,
        credentials: RegistryCredentials | None = None,
        *,
        timeout: float = 10.0,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        verify: bool | str = True,
        page_size: int = 100,
    ) -> None:
        self._auth = TokenAuth(credentials, timeout=timeout, verify=verify)
        self._http = RegistryHttp(
            url,
            auth=self._auth,
            timeout=timeout,
            retry_delays=retry_delays,
            verify=verify,
        )
        self.host = self._http.host
        self._page_size = page_size
        self._sizes: dict[str, int | None] = {}
        self._sizes_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OciRegistryClient({self._http.base_url!r})"

    def repositories(self) -> Iterator[Repository]:
        for name in self._pages("/v2/_catalog", "repositories", gone=()):
            yield Repository(name=name, project=project_of(name))

    def tags(self, repository: str) -> list[str]:
        """Every tag of `repository` (all pages); `ReferenceGoneError` if the registry knows no such name."""
        return list(self._pages(f"/v2/{_checked(repository, _REPOSITORY)}/tags/list", "tags"))

    def artifacts(self, repository: str) -> Iterator[Artifact]:
        tags_of: dict[str, list[str]] = {}
        for tag in sorted(self.tags(repository)):
            try:
                digest, _ = self._head(repository, tag)
            except ReferenceGoneError:
                continue  # deleted between the listing and now
            tags_of.setdefault(digest, []).append(tag)
        for digest, tags in tags_of.items():
            try:
                size = self._size(repository, digest)
            except ReferenceGoneError:
                continue
            yield Artifact(repository=repository, digest=digest, tags=tuple(tags), size_bytes=size)

    def resolve(self, repository: str, tag: str) -> ResolvedTag:
        digest, media_type = self._head(repository, _checked(tag, _TAG))
        return ResolvedTag(digest=digest, size_bytes=self._size(repository, digest), media_type=media_type)

    def close(self) -> None:
        self._http.close()
        self._auth.close()

    # -- manifests ---------------------------------------------------------------------------------
    def _head(self, repository: str, reference: str) -> tuple[str, str]:
        """(digest, media type) that `reference` names now."""
        path = f"/v2/{_checked(repository, _REPOSITORY)}/manifests/{reference}"
        response = self._http.request("HEAD", path, headers={"Accept": manifests.ACCEPT})
        digest = response.headers.get("Docker-Content-Digest")
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        if digest and _DIGEST.fullmatch(digest):
            return digest, media_type
        manifest, raw = self._get(repository, reference)  # a registry that leaves the header out
        return "sha256:" + hashlib.sha256(raw).hexdigest(), manifests.media_type_of(manifest, media_type)

    def _get(self, repository: str, reference: str) -> tuple[dict[str, object], bytes]:
        path = f"/v2/{_checked(repository, _REPOSITORY)}/manifests/{reference}"
        response = self._http.get(path, headers={"Accept": manifests.ACCEPT})
        try:
            manifest = response.json()
        except ValueError:
            manifest = None
        if not isinstance(manifest, dict):
            manifest = {}
        manifest.setdefault("mediaType", response.headers.get("Content-Type", "").split(";")[0].strip())
        return manifest, response.content

    def _size(self, repository: str, digest: str) -> int | None:
        """Config plus layers of the manifest `digest`; of its largest platform for an index."""
        key = f"{repository}@{digest}"
        with self._sizes_lock:
            if key in self._sizes:
                return self._sizes[key]
        manifest, _ = self._get(repository, _checked(digest, _DIGEST))
        if manifest.get("mediaType") in manifests.INDEX_TYPES:
            sizes = [self._size(repository, child) for child in manifests.index_children(manifest)]
            known = [s for s in sizes if s is not None]
            size = max(known) if known else None
        else:
            size = manifests.image_size(manifest)
        with self._sizes_lock:
            if len(self._sizes) >= _SIZE_CACHE_LIMIT:
                self._sizes.pop(next(iter(self._sizes)))
            self._sizes[key] = size
        return size

    # -- listings ----------------------------------------------------------------------------------
    def _pages(self, path: str, field: str, gone: tuple[int, ...] = (404,)) -> Iterator[str]:
        url: str | None = str(httpx.URL(path, params={"n": self._page_size}))
        while url is not None:
            response = self._http.get(url, gone=gone)
            body = response.json()
            yield from (body.get(field) or []) if isinstance(body, dict) else []
            url = next_link(response)


def _checked(value: str, grammar: re.Pattern[str]) -> str:
    """`value` if it matches the grammar, so nothing else (`..`, `?`) reaches a URL path."""
    if not grammar.fullmatch(value):
        raise ReferenceGoneError(f"{value!r} is not a valid repository name, tag or digest")
    return value
