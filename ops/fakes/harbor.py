"""A contract fake of Harbor's API v2.0 over real HTTP: projects, repositories, artifacts (tags, labels,
sizes, push times, an index's platforms), robot accounts, Basic auth, page/page_size pagination with
`X-Total-Count` and `Link`, and Harbor's error bodies.

Followed from goharbor/harbor v2.15.2, `api/v2.0/swagger.yaml` (paths, parameters, the `Project`,
`Repository`, `Artifact`, `Tag`, `Label`, `RobotCreate`, `RobotCreated`, `Errors` definitions) and the
handlers behind it (`src/server/v2.0/handler/`): the content in `harbor_catalog`, robots in
`harbor_robots`, pagination and errors in `harbor_http`.
- Auth: Basic for a user (the admin sees everything; a user sees public projects and those they are a
  member of) or a robot (`robot$…`: it authenticates, but a pull-only robot may not read the API: 403);
  wrong credentials are 401 `UNAUTHORIZED`; anonymous requests see public projects only, and a private
  project's content is 401 for them, 403 `FORBIDDEN` for a signed-in non-member; robots need sign-in.
- Paths: the router matches the path decoded once, and a repository name is decoded once more, so a
  `a/b` repository must be sent as `a%252Fb` (`a%2Fb` routes to nothing: 404), as the swagger warns.
- Lists: `with_tag` (default true) and `with_label` (default false) on artifacts; artifacts that an index
  references are reached only by digest.

A route it does not know is 404 `NOT_FOUND` and recorded in `unexpected`, which tests check is empty.
Faults for tests: `fail_next(n, status=503)` (None: drop the connection). `seed_demo` fills it for
`remotegpu dev --registry harbor`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from remotegpu.core.platform import clock
from remotegpu.ops.fakes.harbor_catalog import Catalog, FakeArtifact, FakeProject
from remotegpu.ops.fakes.harbor_http import Handler, HarborError, Reply, not_found, page
from remotegpu.ops.fakes.harbor_robots import FakeRobot, Robots
from remotegpu.ops.fakes.served import ServedFake

_PROJECT = r"/api/v2\.0/projects/(?P<project>[^/]+)"
_REPOSITORY = _PROJECT + r"/repositories/(?P<repository>[^/]+)"
_ROUTES = [
    ("GET", "ping", re.compile(r"/api/v2\.0/ping")),
    ("GET", "projects", re.compile(r"/api/v2\.0/projects")),
    ("GET", "project", re.compile(_PROJECT)),
    ("GET", "repositories", re.compile(_PROJECT + "/repositories")),
    ("GET", "repository", re.compile(_REPOSITORY)),
    ("GET", "artifacts", re.compile(_REPOSITORY + "/artifacts")),
    ("GET", "artifact", re.compile(_REPOSITORY + r"/artifacts/(?P<reference>[^/]+)")),
    ("GET", "robots", re.compile(r"/api/v2\.0/robots")),
    ("POST", "create_robot", re.compile(r"/api/v2\.0/robots")),
    ("PATCH", "refresh_robot", re.compile(r"/api/v2\.0/robots/(?P<robot>[^/]+)")),
]


@dataclass
class FakeUser:
    name: str
    password: str = field(repr=False)
    admin: bool = False
    projects: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class _Caller:
    """Who sent a request: None for both when anonymous."""

    user: FakeUser | None
    robot: FakeRobot | None

    def may_read(self, project: FakeProject) -> bool:
        if project.public or (self.user is not None and self.user.admin):
            return True
        return self.user is not None and project.name in self.user.projects


class FakeHarbor(ServedFake):
    """A Harbor on 127.0.0.1 with one admin (`admin_username`/`admin_password`); a context manager."""

    def __init__(
        self,
        *,
        admin_username: str = "admin",
        admin_password: str | None = None,
        port: int = 0,
        now: Callable[[], dt.datetime] = clock.now,
    ) -> None:
        self.catalog = Catalog(now)
        self.robots = Robots(self.catalog)
        self.admin_password = admin_password or secrets.token_urlsafe(18)
        self.users = {admin_username: FakeUser(admin_username, self.admin_password, admin=True)}
        self.unexpected: list[str] = []
        self.requests: list[str] = []
        """`METHOD /path?query` of every request (no secret travels in one)."""
        self._faults: list[int | None] = []
        self._lock = threading.Lock()
        self._serve(Handler, port, handle=self.handle)

    # What tests and `remotegpu dev` use

    def add_project(self, name: str, *, public: bool = False) -> FakeProject:
        with self._lock:
            return self.catalog.add_project(name, public=public)

    def add_user(self, name: str, *, projects: Sequence[str] = (), admin: bool = False) -> str:
        """A user (a member of `projects`); returns the password."""
        password = secrets.token_urlsafe(18)
        with self._lock:
            self.users[name] = FakeUser(name, password, admin, set(projects))
        return password

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
        """An artifact pushed to `repository` (`project/rest`) under `tags`, which leave any other
        artifact; an index when `platforms` ((os, arch), size) are given."""
        with self._lock:
            return self.catalog.push(
                repository, tags, size=size, labels=labels, platforms=platforms, pushed_at=pushed_at
            )

    def delete_artifact(self, repository: str, digest: str) -> None:
        with self._lock:
            del self.catalog.repositories[repository].artifacts[digest]

    def robot(self, full_name: str) -> FakeRobot | None:
        with self._lock:
            return self.robots.by_name(full_name)

    def fail_next(self, count: int, status: int | None = 503) -> None:
        """Answer the next `count` requests with `status`; None: drop them unanswered."""
        with self._lock:
            self._faults.extend([status] * count)

    # Serving

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply | None:
        with self._lock:
            self.requests.append(f"{method} {target}")
            if self._faults:
                status = self._faults.pop(0)
                if status is None:
                    return None
                return Reply.error(HarborError(status, "UNKNOWN", "injected fault"))
            try:
                return self._route(method, target, headers, body)
            except HarborError as error:
                return Reply.error(error)

    def _route(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply:
        split = urlsplit(target)
        decoded = unquote(split.path)  # what Go's router matches
        for route_method, name, pattern in _ROUTES:
            match = pattern.fullmatch(decoded)
            if match and route_method == method:
                caller = self._caller(headers)
                params = {k: unquote(v) for k, v in match.groupdict().items()}
                handler: Callable[..., Reply] = getattr(self, f"_{name}")
                return handler(caller, params, split.path, split.query, headers, body)
        self.unexpected.append(f"{method} {target}")
        raise not_found(f"{method} {split.path} is not a route of this fake")

    def _caller(self, headers: dict[str, str]) -> _Caller:
        authorization = headers.get("authorization", "")
        if not authorization:
            return _Caller(None, None)
        scheme, _, encoded = authorization.partition(" ")
        try:
            name, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            name, password = "", ""
        user = self.users.get(name)
        if scheme.lower() == "basic" and user is not None and secrets.compare_digest(user.password, password):
            return _Caller(user, None)
        robot = self.robots.by_name(name)
        if scheme.lower() == "basic" and robot is not None and secrets.compare_digest(robot.secret, password):
            return _Caller(None, robot)
        raise HarborError(401, "UNAUTHORIZED", "unauthorized")

    def _readable(self, caller: _Caller, name: str) -> FakeProject:
        project = self.catalog.project(name, is_name=True)
        if caller.may_read(project):
            return project
        if caller.user is None and caller.robot is None:
            raise HarborError(401, "UNAUTHORIZED", "unauthorized")
        raise HarborError(403, "FORBIDDEN", "forbidden")

    # Routes: (caller, path parameters, raw path, raw query, headers, body) → answer

    def _ping(self, *_: Any) -> Reply:
        return Reply(200, b"Pong", content_type="text/plain")

    def _projects(self, caller: _Caller, _: dict[str, str], path: str, query: str, *__: Any) -> Reply:
        wanted = dict(parse_qsl(query)).get("name")
        visible = [
            p.json() | {"repo_count": self._repo_count(p)}
            for p in sorted(self.catalog.projects.values(), key=lambda p: p.name)
            if caller.may_read(p) and (wanted is None or p.name == wanted)
        ]
        return page(visible, path, query)

    def _project(
        self, caller: _Caller, params: dict[str, str], _: str, __: str, headers: dict[str, str], *___: Any
    ) -> Reply:
        is_name = headers.get("x-is-resource-name", "").lower() == "true"
        project = self.catalog.project(params["project"], is_name=is_name)
        self._readable(caller, project.name)
        return Reply.json(200, project.json() | {"repo_count": self._repo_count(project)})

    def _repositories(self, caller: _Caller, params: dict[str, str], path: str, query: str, *_: Any) -> Reply:
        project = self._readable(caller, params["project"])
        listed = [
            r.json()
            for r in sorted(self.catalog.repositories.values(), key=lambda r: r.name)
            if r.project is project
        ]
        return page(listed, path, query)

    def _repository(self, caller: _Caller, params: dict[str, str], *_: Any) -> Reply:
        project = self._readable(caller, params["project"])
        return Reply.json(200, self.catalog.repository(project, params["repository"]).json())

    def _artifacts(self, caller: _Caller, params: dict[str, str], path: str, query: str, *_: Any) -> Reply:
        project = self._readable(caller, params["project"])
        repository = self.catalog.repository(project, params["repository"])
        options = dict(parse_qsl(query))
        with_tag, with_label = _flag(options, "with_tag", True), _flag(options, "with_label", False)
        newest_first = sorted(
            repository.artifacts.values(), key=lambda a: (a.pushed, a.artifact_id), reverse=True
        )
        listed = [repository.artifact_json(a, with_tag=with_tag, with_label=with_label) for a in newest_first]
        return page(listed, path, query)

    def _artifact(self, caller: _Caller, params: dict[str, str], _: str, query: str, *__: Any) -> Reply:
        project = self._readable(caller, params["project"])
        repository = self.catalog.repository(project, params["repository"])
        options = dict(parse_qsl(query))
        artifact = repository.artifact(params["reference"])
        body = repository.artifact_json(
            artifact,
            with_tag=_flag(options, "with_tag", True),
            with_label=_flag(options, "with_label", False),
        )
        return Reply.json(200, body)

    def _robots(self, caller: _Caller, _: dict[str, str], path: str, query: str, *__: Any) -> Reply:
        self._require_admin(caller)
        return page(self.robots.listing(dict(parse_qsl(query)).get("q", "")), path, query)

    def _create_robot(
        self, caller: _Caller, _: dict[str, str], path: str, __: str, ___: dict[str, str], body: bytes
    ) -> Reply:
        self._require_admin(caller)
        robot, secret = self.robots.create(_json(body))
        created = {
            "id": robot.robot_id,
            "name": robot.name,
            "secret": secret,
            "creation_time": robot.json()["creation_time"],
            "expires_at": robot.json()["expires_at"],
        }
        return Reply.json(201, created, Location=f"{path.rstrip('/')}/{robot.robot_id}")

    def _refresh_robot(
        self, caller: _Caller, params: dict[str, str], _: str, __: str, ___: dict[str, str], body: bytes
    ) -> Reply:
        self._require_admin(caller)
        return Reply.json(200, self.robots.refresh(params["robot"], _json(body)))

    def _require_admin(self, caller: _Caller) -> None:
        if caller.user is None and caller.robot is None:
            raise HarborError(401, "UNAUTHORIZED", "unauthorized")
        if caller.user is None or not caller.user.admin:
            raise HarborError(403, "FORBIDDEN", "forbidden")

    def _repo_count(self, project: FakeProject) -> int:
        return sum(1 for r in self.catalog.repositories.values() if r.project is project)


def _flag(options: dict[str, str], name: str, default: bool) -> bool:
    value = options.get(name)
    return default if value is None else value.lower() == "true"


def _json(body: bytes) -> Any:
    try:
        return json.loads(body or b"{}")
    except ValueError:
        raise HarborError(400, "BAD_REQUEST", "the body is not JSON") from None


def seed_demo(harbor: FakeHarbor) -> None:
    """A small catalog for `remotegpu dev --registry harbor`: a public `library` project (PyTorch as a
    two-platform index, CUDA) and a private `research` project with a labelled image."""
    harbor.add_project("library", public=True)
    harbor.add_project("research")
    harbor.push(
        "library/pytorch",
        ["24.05-cuda12", "latest"],
        platforms=[(("linux", "amd64"), 8_400_000_000), (("linux", "arm64"), 7_900_000_000)],
        labels=["approved"],
    )
    harbor.push("library/pytorch", ["23.10-cuda12"], size=7_800_000_000)
    harbor.push("library/cuda", ["12.4.1-runtime-ubuntu22.04"], size=1_500_000_000)
    harbor.push("research/llm/finetune", ["v1"], size=12_000_000_000, labels=["approved", "gpu"])
