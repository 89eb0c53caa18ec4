"""Configured registries, for platform admins: which registries the catalog is synced from, which of
their projects each workspace sees, and the logins used to read and pull them.

Logins are written, never read back: `PUT .../login` answers 204, and the registry's answer says only
whether a login is stored.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import msgspec
from litestar import Router, delete, get, post, put
from litestar.params import FromPath, FromQuery, JSONBody

from remotegpu.api.context import AnyRequest, Api
from remotegpu.api.openapi import answers
from remotegpu.core.registry.configured import (
    RegistryConfig,
    RegistryDocument,
    check_registry_name,
    get_registry,
    put_registry,
    registry_rows,
    remove_registry,
)
from remotegpu.core.registry.credentials import (
    RegistryLogin,
    project_login_path,
    read_login,
    registry_login_path,
    remove_login,
    set_login,
)
from remotegpu.core.registry.robots import DEFAULT_ROBOT, create_project_robot
from remotegpu.core.secrets.store import SecretStore

Path = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]


class RegistryIn(msgspec.Struct, forbid_unknown_fields=True):
    """A registry to sync: `public` paths join every workspace's catalog, `workspaces` maps a path to
    the one workspace whose private catalog it joins. Paths are Harbor projects (or a plain registry's
    first path segment), or whole repository paths."""

    kind: Annotated[str, msgspec.Meta(examples=["harbor"], description="`oci` or `harbor`")]
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=512, examples=["https://harbor.example.org"])]
    public: list[Path] = msgspec.field(default_factory=list)
    workspaces: dict[Path, str] = msgspec.field(default_factory=dict)
    host: Annotated[str, msgspec.Meta(min_length=1, max_length=253)] | None = None
    """host[:port] as image references name it, when it differs from the URL's."""


class RegistryOut(msgspec.Struct):
    """A configured registry and how its last sync went (no credential is ever shown)."""

    name: str
    kind: str
    url: str
    host: str
    public: list[str]
    workspaces: dict[str, str]
    has_login: bool
    """Whether a login is stored for the registry itself."""
    project_logins: list[str]
    """Paths with a login of their own (e.g. a Harbor robot account of that project)."""
    last_synced_at: dt.datetime | None
    last_sync_error: str | None


class RegistryList(msgspec.Struct):
    """Every configured registry, by name."""

    items: list[RegistryOut]


class LoginIn(msgspec.Struct, forbid_unknown_fields=True):
    """A login to read and pull with (a robot account's name and secret, say); for one project only
    when `project` names a mapped path."""

    username: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
    project: Path | None = None


def _out(config: RegistryConfig, row: Any, store: SecretStore | None) -> RegistryOut:
    has_login = store is not None and read_login(store, registry_login_path(config.id)) is not None
    project_logins = (
        [p.path for p in config.projects if read_login(store, project_login_path(p.id)) is not None]
        if store is not None
        else []
    )
    return RegistryOut(
        config.name,
        config.kind,
        config.url,
        config.host,
        [p.path for p in config.projects if p.workspace_id is None],
        {p.path: p.workspace or str(p.workspace_id) for p in config.projects if p.workspace_id is not None},
        has_login,
        project_logins,
        row.last_synced_at,
        row.last_sync_error,
    )


@put("/{name:str}", sync_to_thread=True, opt=answers(403, 409))
def configure(name: FromPath[str], data: JSONBody[RegistryIn], request: AnyRequest, api: Api) -> RegistryOut:
    """Add a registry or replace its configuration; the next sync fills (and prunes) its images."""
    document = RegistryDocument(data.kind, data.url, data.public, data.workspaces, data.host)
    with api.acting(request, admin=True) as (connection, principal):
        check_registry_name(name)
        put_registry(connection, principal, name, document)
        ((config, row),) = registry_rows(connection, name)
    return _out(config, row, api.secret_store)


@get("/", sync_to_thread=True, opt=answers(403))
def list_all(request: AnyRequest, api: Api) -> RegistryList:
    """Every configured registry with its last sync."""
    with api.acting(request, admin=True) as (connection, _principal):
        rows = registry_rows(connection)
    return RegistryList([_out(config, row, api.secret_store) for config, row in rows])


@get("/{name:str}", sync_to_thread=True, opt=answers(403, 404))
def show(name: FromPath[str], request: AnyRequest, api: Api) -> RegistryOut:
    """One configured registry."""
    with api.acting(request, admin=True) as (connection, _principal):
        get_registry(connection, name)
        ((config, row),) = registry_rows(connection, name)
    return _out(config, row, api.secret_store)


@delete("/{name:str}", status_code=204, sync_to_thread=True, opt=answers(403))
def remove(name: FromPath[str], request: AnyRequest, api: Api) -> None:
    """Forget a registry (done already when it is not configured): its images stay, marked gone, and
    its logins are deleted."""
    with api.acting(request, admin=True) as (connection, principal):
        found = registry_rows(connection, name)
        removed = remove_registry(connection, principal, name)
    if removed and api.secret_store is not None:  # after the commit: a login outlives a failed delete
        config = found[0][0]
        api.secret_store.delete(registry_login_path(config.id))
        for project in config.projects:
            api.secret_store.delete(project_login_path(project.id))


@put("/{name:str}/login", status_code=204, sync_to_thread=True, opt=answers(403, 404, 503))
def set_registry_login(name: FromPath[str], data: JSONBody[LoginIn], request: AnyRequest, api: Api) -> None:
    """Store the login the sync, the pinning and the pods' pull Secret use (for one project with
    `project`); never shown again."""
    with api.acting(request, admin=True) as (connection, principal):
        config = get_registry(connection, name)
        set_login(
            connection,
            principal,
            api.secrets,
            config,
            RegistryLogin(data.username, data.password),
            project=data.project,
        )


@delete("/{name:str}/login", status_code=204, sync_to_thread=True, opt=answers(403, 404, 503))
def remove_registry_login(
    name: FromPath[str], request: AnyRequest, api: Api, project: FromQuery[str | None] = None
) -> None:
    """Forget a login (done already when there is none)."""
    with api.acting(request, admin=True) as (connection, principal):
        config = get_registry(connection, name)
        remove_login(connection, principal, api.secrets, config, project=project)


class RobotIn(msgspec.Struct, forbid_unknown_fields=True):
    """A Harbor pull robot for one mapped project (made, or given a new secret if it exists)."""

    project: Path
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] = DEFAULT_ROBOT


class RobotOut(msgspec.Struct):
    """The robot made; its secret is stored as the project's login and never shown."""

    registry: str
    project: str
    robot: str


@post("/{name:str}/robots", status_code=201, sync_to_thread=True, opt=answers(403, 404, 409, 503))
def make_robot(name: FromPath[str], data: JSONBody[RobotIn], request: AnyRequest, api: Api) -> RobotOut:
    """Ask Harbor (with the registry's own login) for a robot that may pull from `project`, and store it
    as that project's login: its images are then pulled with it. No session is open during the call."""
    with api.acting(request, admin=True) as (_connection, principal):
        caller = principal  # checked here; the Harbor call below runs with no session open
    robot = create_project_robot(
        api.engine, caller, api.secrets, api.registry_clients, name, data.project, data.name
    )
    return RobotOut(name, data.project, robot)


router = Router(
    "/registries",
    route_handlers=[configure, list_all, show, remove, set_registry_login, remove_registry_login, make_robot],
    tags=["registries"],
)
