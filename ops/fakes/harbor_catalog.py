"""The fake Harbor's content: projects, repositories and artifacts (with tags, labels and an index's
platform children), and their JSON as the swagger's `Project`, `Repository` and `Artifact` definitions.

As in Harbor (`src/pkg/artifact/dao/dao.go`), an artifact that an index references is not listed on its
own, only reached by its digest; an image's `size` is its manifest plus config plus layers, an index's its
manifest plus its children's (`src/controller/artifact/abstractor.go`). Times are `date-time` strings.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from remotegpu.core.registry import manifests
from remotegpu.ops.fakes.harbor_http import not_found

CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
INDEX_MANIFEST_SIZE = 500
IMAGE_MANIFEST_SIZE = 400


def harbor_time(moment: dt.datetime) -> str:
    """Harbor's `date-time`: RFC 3339 in UTC with milliseconds and `Z`."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class FakeProject:
    project_id: int
    name: str
    public: bool
    created: dt.datetime
    members: set[str] = field(default_factory=set)

    def json(self) -> dict[str, Any]:
        return {
            "project_id": self.project_id,
            "name": self.name,
            "owner_id": 1,
            "owner_name": "admin",
            "registry_id": 0,
            "creation_time": harbor_time(self.created),
            "update_time": harbor_time(self.created),
            "deleted": False,
            "togglable": True,
            "repo_count": 0,
            "metadata": {"public": "true" if self.public else "false"},
        }


@dataclass
class FakeArtifact:
    artifact_id: int
    digest: str
    manifest_media_type: str
    size: int
    pushed: dt.datetime
    tags: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    children: list[tuple[FakeArtifact, tuple[str, str]]] = field(default_factory=list)
    """An index's (child, (os, architecture))."""


@dataclass
class FakeRepository:
    repository_id: int
    project: FakeProject
    name: str
    """The full name, `project/rest`."""
    created: dt.datetime
    artifacts: dict[str, FakeArtifact] = field(default_factory=dict)
    children: dict[str, FakeArtifact] = field(default_factory=dict)
    """Artifacts an index references: reachable by digest, not listed."""

    def json(self) -> dict[str, Any]:
        return {
            "id": self.repository_id,
            "project_id": self.project.project_id,
            "name": self.name,
            "description": "",
            "artifact_count": len(self.artifacts),
            "pull_count": 0,
            "creation_time": harbor_time(self.created),
            "update_time": harbor_time(self.created),
        }

    def artifact(self, reference: str) -> FakeArtifact:
        """By digest (listed or a child) or by tag; `NOT_FOUND` as Harbor words it."""
        if reference.startswith("sha256:"):
            found = self.artifacts.get(reference) or self.children.get(reference)
        else:
            found = next((a for a in self.artifacts.values() if reference in a.tags), None)
        if found is None:
            raise not_found(f"artifact {self.name}:{reference} not found")
        return found

    def artifact_json(self, artifact: FakeArtifact, *, with_tag: bool, with_label: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": artifact.artifact_id,
            "type": "IMAGE",
            "media_type": CONFIG_TYPE,
            "manifest_media_type": artifact.manifest_media_type,
            "project_id": self.project.project_id,
            "repository_id": self.repository_id,
            "repository_name": self.name,
            "digest": artifact.digest,
            "size": artifact.size,
            "push_time": harbor_time(artifact.pushed),
            "pull_time": "0001-01-01T00:00:00.000Z",
            "extra_attrs": {},
            "annotations": {},
            "references": [
                {
                    "parent_id": artifact.artifact_id,
                    "child_id": child.artifact_id,
                    "child_digest": child.digest,
                    "platform": {"os": os_name, "architecture": architecture},
                }
                for child, (os_name, architecture) in artifact.children
            ]
            or None,
        }
        if with_tag:
            body["tags"] = [
                {
                    "id": artifact.artifact_id * 1000 + number,
                    "repository_id": self.repository_id,
                    "artifact_id": artifact.artifact_id,
                    "name": tag,
                    "push_time": harbor_time(artifact.pushed),
                    "pull_time": "0001-01-01T00:00:00.000Z",
                    "immutable": False,
                }
                for number, tag in enumerate(artifact.tags)
            ] or None
        if with_label:
            body["labels"] = [
                {
                    "id": number + 1,
                    "name": label,
                    "description": "",
                    "color": "",
                    "scope": "g",
                    "project_id": 0,
                }
                for number, label in enumerate(artifact.labels)
            ] or None
        return body


class Catalog:
    """Projects → repositories → artifacts; not thread-safe (the fake holds its lock)."""

    def __init__(self, now: Callable[[], dt.datetime]) -> None:
        self.now = now
        self.projects: dict[str, FakeProject] = {}
        self.repositories: dict[str, FakeRepository] = {}
        self._ids = itertools.count(1)

    def add_project(self, name: str, *, public: bool = False) -> FakeProject:
        if name not in self.projects:
            self.projects[name] = FakeProject(next(self._ids), name, public, self.now())
        return self.projects[name]

    def project(self, name_or_id: str, *, is_name: bool = False) -> FakeProject:
        if not is_name and name_or_id.isdigit():
            found = next((p for p in self.projects.values() if p.project_id == int(name_or_id)), None)
        else:
            found = self.projects.get(name_or_id)
        if found is None:
            raise not_found(f"project {name_or_id} not found")
        return found

    def repository(self, project: FakeProject, rest: str) -> FakeRepository:
        found = self.repositories.get(f"{project.name}/{rest}")
        if found is None:
            raise not_found(f"repository {project.name}/{rest} not found")
        return found

    def push(
        self,
        repository: str,
        tags: Sequence[str],
        *,
        size: int = 1_000_000,
        labels: Sequence[str] = (),
        platforms: Sequence[tuple[tuple[str, str], int]] = (),
        pushed_at: dt.datetime | None = None,
    ) -> FakeArtifact:
        """A new artifact (an index of `platforms` — ((os, arch), size) — when given) under `tags`, taken
        from whatever artifacts held them; the project is made if missing."""
        project_name, _, _ = repository.partition("/")
        project = self.add_project(project_name)
        repo = self.repositories.get(repository)
        if repo is None:
            repo = self.repositories[repository] = FakeRepository(
                next(self._ids), project, repository, self.now()
            )
        moment = pushed_at or self.now()
        children = [(self._new(manifests.OCI_MANIFEST, s, moment), platform) for platform, s in platforms]
        for child, _ in children:
            repo.children[child.digest] = child
        if children:
            total = INDEX_MANIFEST_SIZE + sum(child.size for child, _ in children)
            artifact = self._new(manifests.OCI_INDEX, total, moment)
            artifact.children = children
        else:
            artifact = self._new(manifests.OCI_MANIFEST, size, moment)
        for other in repo.artifacts.values():
            other.tags = [t for t in other.tags if t not in tags]
        artifact.tags = list(tags)
        artifact.labels = list(labels)
        repo.artifacts[artifact.digest] = artifact
        return artifact

    def _new(self, media_type: str, size: int, moment: dt.datetime) -> FakeArtifact:
        digest = "sha256:" + hashlib.sha256(os.urandom(32)).hexdigest()
        return FakeArtifact(next(self._ids), digest, media_type, size, moment)
