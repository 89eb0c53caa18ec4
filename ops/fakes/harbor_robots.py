"""The fake Harbor's robot accounts: `POST /robots`, `GET /robots`, `PATCH /robots/{id}` (refresh secret).

Followed from goharbor/harbor v2.15.2 `src/server/v2.0/handler/robot.go` and `src/controller/robot`:
the name must match `^[a-z0-9]+(?:[._-][a-z0-9]+)*$`; `duration` is -1 (never) or a positive number of
days, 0 is refused; a project robot has exactly one permission, of kind `project`, whose namespace names
the project; it is stored as `robot$<project>+<name>` (409 `CONFLICT` if that exists) and its secret is
answered once (`RobotCreated`), never in a listing; `PATCH` with an empty secret makes a new one and
answers it. Listing project robots needs `q=Level=project,ProjectID=<id>`.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from remotegpu.ops.fakes.harbor_catalog import Catalog, harbor_time
from remotegpu.ops.fakes.harbor_http import HarborError, not_found

PREFIX = "robot$"
_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
PROJECT_ACCESS = {
    ("repository", "pull"), ("repository", "push"), ("repository", "list"), ("artifact", "read"),
    ("artifact", "list"), ("tag", "list"), ("tag", "create"), ("helm-chart", "read"),
}  # fmt: skip
"""Part of Harbor's project-scope permissions (`src/common/rbac/project/rbac_role.go`): enough to say no
to what is not one."""


def _bad(message: str) -> HarborError:
    return HarborError(400, "BAD_REQUEST", message)


@dataclass
class FakeRobot:
    robot_id: int
    name: str
    """`robot$<project>+<name>`."""
    secret: str = field(repr=False)
    project_id: int
    duration: int
    permissions: list[dict[str, Any]]
    created: dt.datetime

    def json(self) -> dict[str, Any]:
        expires = (
            -1 if self.duration == -1 else int((self.created + dt.timedelta(days=self.duration)).timestamp())
        )
        return {
            "id": self.robot_id,
            "name": self.name,
            "description": "",
            "level": "project",
            "duration": self.duration,
            "editable": True,
            "disable": False,
            "expires_at": expires,
            "permissions": self.permissions,
            "creation_time": harbor_time(self.created),
            "update_time": harbor_time(self.created),
        }

    def may_pull(self, project_id: int) -> bool:
        return self.project_id == project_id and any(
            access.get("resource") == "repository" and access.get("action") == "pull"
            for permission in self.permissions
            for access in permission.get("access") or []
        )


class Robots:
    """Robot accounts by id; not thread-safe (the fake holds its lock)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.robots: dict[int, FakeRobot] = {}
        self._ids = itertools.count(1)

    def by_name(self, name: str) -> FakeRobot | None:
        return next((r for r in self.robots.values() if r.name == name), None)

    def create(self, body: Any) -> tuple[FakeRobot, str]:
        """The robot `RobotCreate` describes, and its secret (answered this once)."""
        if not isinstance(body, dict):
            raise _bad("the robot is not a JSON object")
        name = body.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise _bad("robot name is not in lower case or contains illegal characters")
        duration = body.get("duration")
        if not isinstance(duration, int) or not (duration == -1 or 0 < duration < 2**31 - 1):
            raise _bad(
                f"bad request error duration input: {duration}, duration must be either -1(Never) or a positive integer"
            )
        if body.get("level") != "project":
            raise _bad(f"bad request error level input: {body.get('level')}")  # system robots: not faked
        permissions = body.get("permissions")
        if not isinstance(permissions, list) or not permissions:
            raise _bad("bad request empty permission")
        if len(permissions) > 1:
            raise _bad("bad request permission")
        permission = permissions[0]
        if not isinstance(permission, dict) or not permission.get("access"):
            raise _bad("bad request empty access")
        if permission.get("kind") != "project":
            raise _bad(f"bad request permission level: {permission.get('kind')}")
        for access in permission["access"]:
            if (access.get("resource"), access.get("action")) not in PROJECT_ACCESS:
                raise _bad(f"bad request permission: {access.get('resource')}:{access.get('action')}")
        project = self.catalog.project(str(permission.get("namespace", "")))
        full_name = f"{PREFIX}{project.name}+{name}"
        if self.by_name(full_name) is not None:
            raise HarborError(409, "CONFLICT", f"robot account {full_name} already exists")
        secret = _new_secret()
        robot = FakeRobot(
            next(self._ids), full_name, secret, project.project_id, duration, permissions, self.catalog.now()
        )
        self.robots[robot.robot_id] = robot
        return robot, secret

    def listing(self, query: str) -> list[dict[str, Any]]:
        """`q=Level=project,ProjectID=<id>`: that project's robots (secrets left out, as Harbor does)."""
        keys = dict(part.split("=", 1) for part in query.split(",") if "=" in part)
        if keys.get("Level") != "project":
            return []  # system robots: not faked
        if "ProjectID" not in keys:
            raise _bad("must with project ID when to query project robots")
        if not keys["ProjectID"].isdigit() or int(keys["ProjectID"]) <= 0:
            raise _bad("ProjectID must be a positive integer")
        return [r.json() for r in self.robots.values() if r.project_id == int(keys["ProjectID"])]

    def refresh(self, robot_id: str, body: Any) -> dict[str, str]:
        """A new secret: generated (and answered) when the body gives none."""
        robot = self.robots.get(int(robot_id)) if robot_id.isdigit() else None
        if robot is None:
            raise not_found(f"robot {robot_id} not found")
        given = body.get("secret") if isinstance(body, dict) else None
        if given:
            robot.secret = str(given)
            return {"secret": ""}
        robot.secret = _new_secret()
        return {"secret": robot.secret}


def _new_secret() -> str:
    """32 characters with upper and lower case and digits, as Harbor's `CreateSec` makes them."""
    while True:
        secret = secrets.token_urlsafe(24)[:32]
        if re.search(r"[a-z]", secret) and re.search(r"[A-Z]", secret) and re.search(r"\d", secret):
            return secret
