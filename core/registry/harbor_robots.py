"""Harbor robot accounts that may pull from one project: the pull credentials of a workspace's images.

`POST /api/v2.0/robots` with level `project` and one permission `{kind: project, namespace: <project>,
access: [{resource: repository, action: pull}]}` (`RobotCreate` in the swagger; `duration` is -1 for
never, or days). Harbor names it `robot$<project>+<name>` (the `robot$` prefix is configurable) and
answers its secret this once. Creating a name that exists is 409; then the robot is found
(`GET /robots?q=Level=project,ProjectID=<id>`) and given a new secret (`PATCH /robots/{id}` with an empty
`RobotSec`, which makes Harbor generate one), so a create that crashed after Harbor made the robot, or a
lost secret, is repaired by calling it again.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from remotegpu.core.registry.auth import RegistryCredentials
from remotegpu.core.registry.client import ReferenceGoneError, RegistryUnavailableError
from remotegpu.core.registry.harbor_api import API, pages
from remotegpu.core.registry.http import RegistryHttp

ROBOT_NAME = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")
"""Harbor's `validateName` (`src/server/v2.0/handler/robot.go`)."""


def pull_robot(project: str, name: str, duration_days: int) -> dict[str, object]:
    """The `RobotCreate` body of a robot that may pull from `project`."""
    return {
        "name": name,
        "description": "Pulls images for RemoteGPU environments",
        "level": "project",
        "duration": duration_days,
        "disable": False,
        "permissions": [
            {
                "kind": "project",
                "namespace": project,
                "access": [{"resource": "repository", "action": "pull"}],
            }
        ],
    }


def create_pull_robot(
    http: RegistryHttp, project: str, name: str, *, duration_days: int = -1
) -> RegistryCredentials:
    """The robot's full name and a secret it has now (made, or refreshed if the robot existed)."""
    if not ROBOT_NAME.fullmatch(name):
        raise ValueError(f"robot name {name!r}: use lower-case letters and digits joined by . _ or -")
    if duration_days != -1 and duration_days <= 0:
        raise ValueError("duration_days: -1 (never expires) or a positive number of days")
    answer = http.request(
        "POST", f"{API}/robots", json=pull_robot(project, name, duration_days), ok=(201, 409)
    )
    if answer.status_code == 201:
        created = answer.json()
        return RegistryCredentials(str(created["name"]), str(created["secret"]))
    robot_id, full_name = _existing(http, project, name)
    refreshed = http.request("PATCH", f"{API}/robots/{robot_id}", json={})
    secret = refreshed.json().get("secret")
    if not isinstance(secret, str) or not secret:
        raise RegistryUnavailableError(f"registry {http.host}: PATCH /robots/{robot_id} gave no new secret")
    return RegistryCredentials(full_name, secret)


def _existing(http: RegistryHttp, project: str, name: str) -> tuple[int, str]:
    """(id, full name) of the project's robot called `name`."""
    found = http.get(f"{API}/projects/{quote(project, safe='')}", headers={"X-Is-Resource-Name": "true"})
    project_id = int(found.json()["project_id"])
    suffix = f"{project}+{name}"
    for robot in pages(http, "/robots", {"q": f"Level=project,ProjectID={project_id}"}):
        if str(robot.get("name", "")).endswith(suffix):
            return int(robot["id"]), str(robot["name"])
    raise ReferenceGoneError(f"registry {http.host}: robot {suffix} exists but is not listed")
