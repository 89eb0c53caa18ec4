"""The caller's account, and user administration for platform admins."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from litestar import Router, get, post
from litestar.params import FromPath, FromQuery, QueryParameter

from remotegpu.api.context import AnyRequest, Api
from remotegpu.api.openapi import answers
from remotegpu.api.routes.auth import UserOut
from remotegpu.core.accounts.users import get_user, list_users, set_user_disabled
from remotegpu.core.platform.pagination import MAX_PAGE_SIZE


class UserList(msgspec.Struct):
    """A page of users."""

    items: list[UserOut]
    next_cursor: str | None = None


def user_out(row: Any) -> UserOut:
    """A user row as the API shows it."""
    return UserOut(row.id, row.email, row.username, str(row.role), bool(row.disabled))


@get("/me", sync_to_thread=True)
def me(request: AnyRequest, api: Api) -> UserOut:
    """The signed-in user."""
    with api.acting(request) as (connection, principal):
        return user_out(get_user(connection, principal.user_id))


@get("/", sync_to_thread=True, opt=answers(403))
def list_all(
    request: AnyRequest,
    api: Api,
    limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE_SIZE)] = 50,
    cursor: FromQuery[str | None] = None,
) -> UserList:
    """Every user (platform admins)."""
    with api.acting(request, admin=True) as (connection, _):
        rows, following = list_users(connection, limit=limit, cursor=cursor)
    return UserList([user_out(r) for r in rows], following)


def _set_disabled(request: AnyRequest, api: Api, user_id: FromPath[uuid.UUID], disabled: bool) -> UserOut:
    with api.acting(request, admin=True) as (connection, principal):
        row = set_user_disabled(connection, user_id, disabled, actor_id=principal.user_id)
    api.principals.clear()  # committed: this process forgets at once; the others on the NOTIFY
    return user_out(row)


@post("/{user_id:uuid}/disable", status_code=200, sync_to_thread=True, opt=answers(403, 409))
def disable(user_id: FromPath[uuid.UUID], request: AnyRequest, api: Api) -> UserOut:
    """Disable a user (platform admins): every token of theirs stops working at once. 409 for yourself
    or the last active platform admin."""
    return _set_disabled(request, api, user_id, True)


@post("/{user_id:uuid}/enable", status_code=200, sync_to_thread=True, opt=answers(403))
def enable(user_id: FromPath[uuid.UUID], request: AnyRequest, api: Api) -> UserOut:
    """Enable a disabled user again (platform admins)."""
    return _set_disabled(request, api, user_id, False)


router = Router("/users", route_handlers=[me, list_all, disable, enable], tags=["users"])
