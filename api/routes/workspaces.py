"""Workspaces and their members."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

import msgspec
from litestar import Router, delete, get, patch, post, put
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from remotegpu.api.context import AnyRequest, Api
from remotegpu.api.openapi import answers
from remotegpu.core.accounts.membership import (
    add_member,
    create_workspace,
    get_workspace,
    list_members,
    list_workspaces,
    remove_member,
    remove_workspace,
    set_member_role,
    update_workspace,
    workspace_access,
)
from remotegpu.core.accounts.workspace_settings import (
    WorkspaceSettings,
    WorkspaceSettingsUpdate,
    get_workspace_settings,
    update_workspace_settings,
)
from remotegpu.core.environments.spec import Name
from remotegpu.core.environments.states import WorkspaceRole
from remotegpu.core.platform.pagination import MAX_PAGE_SIZE
from remotegpu.policies.roles import Action

DisplayName = Annotated[str, msgspec.Meta(max_length=200)]
Role = WorkspaceRole


class WorkspaceIn(msgspec.Struct, forbid_unknown_fields=True):
    """A new workspace; the caller becomes its owner."""

    name: Name
    display_name: DisplayName = ""


class WorkspaceUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """Changes to a workspace (its name is permanent: it names Kubernetes objects)."""

    display_name: DisplayName


class WorkspaceOut(msgspec.Struct):
    """A workspace and the caller's role in it."""

    id: uuid.UUID
    name: str
    display_name: str
    owner_id: uuid.UUID
    created_at: dt.datetime
    role: str | None = None


class WorkspaceList(msgspec.Struct):
    """A page of workspaces."""

    items: list[WorkspaceOut]
    next_cursor: str | None = None


class MemberIn(msgspec.Struct, forbid_unknown_fields=True):
    """A user to add, by id, e-mail or username."""

    user: Annotated[str, msgspec.Meta(min_length=1, max_length=320)]
    role: Role = WorkspaceRole.MEMBER


class RoleIn(msgspec.Struct, forbid_unknown_fields=True):
    """A member's new role."""

    role: Role


class MemberOut(msgspec.Struct):
    """A member and their role; never their e-mail (a user sees their own at `GET /users/me`)."""

    user_id: uuid.UUID
    username: str
    role: str
    added_at: dt.datetime


def _out(row: Any, role: str | None) -> WorkspaceOut:
    return WorkspaceOut(row.id, row.name, row.display_name, row.owner_id, row.created_at, role)


def _member(row: Any) -> MemberOut:
    return MemberOut(row.user_id, row.username, str(row.role), row.created_at)


@post("/", status_code=201, sync_to_thread=True, opt=answers(409))
def create(data: JSONBody[WorkspaceIn], request: AnyRequest, api: Api) -> WorkspaceOut:
    """Create a workspace owned by the caller."""
    with api.acting(request) as (connection, principal):
        return _out(create_workspace(connection, principal, data.name, data.display_name), "owner")


@get("/", sync_to_thread=True)
def list_mine(
    request: AnyRequest,
    api: Api,
    limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE_SIZE)] = 50,
    cursor: FromQuery[str | None] = None,
) -> WorkspaceList:
    """The caller's workspaces by name (every workspace for platform admins)."""
    with api.acting(request) as (connection, principal):
        rows, following = list_workspaces(connection, principal, limit=limit, cursor=cursor)
    return WorkspaceList([_out(r, r.role) for r in rows], following)


@get("/{workspace_id:uuid}", sync_to_thread=True)
def show(workspace_id: FromPath[uuid.UUID], request: AnyRequest, api: Api) -> WorkspaceOut:
    """One workspace the caller belongs to."""
    with api.acting(request) as (connection, principal):
        access = workspace_access(connection, principal, workspace_id)
        return _out(get_workspace(connection, access), access.role.value)


@put("/{workspace_id:uuid}", sync_to_thread=True, opt=answers(403))
def update(
    workspace_id: FromPath[uuid.UUID], data: JSONBody[WorkspaceUpdate], request: AnyRequest, api: Api
) -> WorkspaceOut:
    """Change the display name (workspace admins and owners)."""
    with api.acting(request) as (connection, principal):
        access = workspace_access(connection, principal, workspace_id)
        return _out(update_workspace(connection, principal, access, data.display_name), access.role.value)


@delete("/{workspace_id:uuid}", status_code=202, sync_to_thread=True, opt=answers(403))
def remove(workspace_id: FromPath[uuid.UUID], request: AnyRequest, api: Api) -> dict[str, Any]:
    """Delete the workspace (owners): its environments are stopped and deleted; billing history stays."""
    with api.acting(request) as (connection, principal):
        access = workspace_access(connection, principal, workspace_id)
        environments = remove_workspace(connection, principal, access)
    return {"deleted": str(workspace_id), "environments": [str(e) for e in environments]}


@get("/{workspace_id:uuid}/members", sync_to_thread=True)
def members(workspace_id: FromPath[uuid.UUID], request: AnyRequest, api: Api) -> list[MemberOut]:
    """Members and their roles."""
    with api.acting(request) as (connection, principal):
        access = workspace_access(connection, principal, workspace_id)
        access.require(Action.READ)
        return [_member(r) for r in list_members(connection, access)]


@post("/{workspace_id:uuid}/members", status_code=201, sync_to_thread=True, opt=answers(403, 409))
def add(
    workspace_id: FromPath[uuid.UUID], data: JSONBody[MemberIn], request: AnyRequest, api: Api
) -> MemberOut:
    """Add a member (admins add up to admin; owners also add owners)."""
    with api.acting(request) as (connection, principal):
        access = workspace_access(connection, principal, workspace_id)
        return _member(add_member(connection, principal, access, data.user, data.role))


@patch("/{workspace_id:uuid}/members/{customer_id:uuid}", sync_to_thread=True, opt=answers(403, 409))
def change_role(
    workspace_id: FromPath[uuid.UUID],
    customer_id: FromPath[uuid.UUID],
    data: JSONBody[RoleIn],
    request: AnyRequest,
    api: Api,
) -> MemberOut:
    """Change a member's role; the last owner cannot be demoted."""
    with api.acting(request) as (connection, principal):
        access = workspace_access(connection, principal, workspace_id)
        return _member(set_member_role(connection, principal, access, customer_id, data.role))


@delete("/{workspace_id:uuid}/members/{customer_id:uuid}", sync_to_thread=True, opt=answers(403, 409))
def remove_one(
    workspace_id: FromPath[uuid.UUID], customer_id: FromPath[uuid.UUID], request: AnyRequest, api: Api
) -> None:
    """Remove a member (or leave, when it is the caller); the last owner cannot go."""
    with api.acting(request) as (connection, principal):
        access = workspace_access(connection, principal, workspace_id)
        remove_member(connection, principal, access, customer_id)


@get("/{workspace_id:uuid}/settings", sync_to_thread=True)
def settings(workspace_id: FromPath[uuid.UUID], request: AnyRequest, api: Api) -> WorkspaceSettings:
    """The workspace's settings (any member reads them)."""
    with api.acting(request) as (connection, principal):
        return get_workspace_settings(connection, workspace_access(connection, principal, workspace_id))


@put("/{workspace_id:uuid}/settings", sync_to_thread=True, opt=answers(403))
def change_settings(
    workspace_id: FromPath[uuid.UUID], data: JSONBody[WorkspaceSettingsUpdate], request: AnyRequest, api: Api
) -> WorkspaceSettings:
    """Change settings (workspace admins and owners); fields not given keep their value."""
    with api.acting(request) as (connection, principal):
        access = workspace_access(connection, principal, workspace_id)
        return update_workspace_settings(
            connection, principal, access, data, gateway_choices=api.workspace_gateways
        )


router = Router(
    "/workspaces",
    route_handlers=[
        create,
        list_mine,
        show,
        update,
        remove,
        members,
        add,
        change_role,
        remove_one,
        settings,
        change_settings,
    ],
    tags=["workspaces"],
)
