"""The caller's account, and user administration for platform admins."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

import msgspec
from litestar import Router, get, patch, post, put
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from remotegpu.api.context import AnyRequest, Api
from remotegpu.api.openapi import answers
from remotegpu.api.routes.auth import Password, TokenOut, UserOut, token_pair
from remotegpu.core.accounts.credentials import API_TOKEN_PREFIX, api_token_hash
from remotegpu.core.accounts.passwords import change_password, issue_password_reset, set_display_name
from remotegpu.core.accounts.users import get_user, list_users, set_user_disabled
from remotegpu.core.platform.pagination import MAX_PAGE_SIZE


class UserList(msgspec.Struct):
    """A page of users."""

    items: list[UserOut]
    next_cursor: str | None = None


class PasswordChangeIn(msgspec.Struct, forbid_unknown_fields=True):
    """The current password, and the new one (it must meet the password policy)."""

    old_password: Password
    new_password: Password


class ProfileIn(msgspec.Struct, forbid_unknown_fields=True):
    """What a user may change about themselves; null or blank clears the display name."""

    display_name: Annotated[str, msgspec.Meta(max_length=128)] | None = None


class PasswordResetOut(msgspec.Struct):
    """A one-time password reset token: shown only in this answer; give it to the user, who redeems it
    with `POST /auth/reset` (or `remotegpu reset-password`) before `expires_at`."""

    user_id: uuid.UUID
    reset_token: str
    expires_at: dt.datetime


def user_out(row: Any) -> UserOut:
    """A user row as the API shows it."""
    return UserOut(row.id, row.email, row.username, str(row.role), bool(row.disabled), row.display_name)


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


@patch("/me", sync_to_thread=True)
def update_me(data: JSONBody[ProfileIn], request: AnyRequest, api: Api) -> UserOut:
    """Change your profile (the display name shown in the console and at gateways)."""
    with api.acting(request) as (connection, principal):
        set_display_name(connection, principal, data.display_name)
        row = get_user(connection, principal.user_id)
    api.principals.clear()
    return user_out(row)


@put("/me/password", sync_to_thread=True, opt=answers(422))
def change_my_password(data: JSONBody[PasswordChangeIn], request: AnyRequest, api: Api) -> TokenOut:
    """Change your password (the current one is required). Every other token of yours stops working:
    access and refresh tokens at once, and API tokens except the one this request used. The answer is a
    new token pair, so the session that changed it stays signed in."""
    credential = (request.headers.get("authorization") or "").partition(" ")[2].strip()
    keep = api_token_hash(credential) if credential.startswith(API_TOKEN_PREFIX) else None
    with api.acting(request) as (connection, principal):
        generation = change_password(
            connection, principal, data.old_password, data.new_password, keep_api_token_hash=keep
        )
    api.principals.clear()  # committed: this process forgets at once; the others on the NOTIFY
    return token_pair(api, principal.user_id, generation)


@post("/{user_id:uuid}/password-reset", status_code=201, sync_to_thread=True, opt=answers(403, 404))
def issue_reset(user_id: FromPath[uuid.UUID], request: AnyRequest, api: Api) -> PasswordResetOut:
    """Issue a one-time password reset token for a user (platform admins); it expires after
    `password_reset_hours`, and an earlier unused one stops working."""
    with api.acting(request, admin=True) as (connection, principal):
        issued = issue_password_reset(connection, principal, user_id, api.password_reset_lifetime)
    return PasswordResetOut(issued.user_id, issued.token, issued.expires_at)


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


router = Router(
    "/users",
    route_handlers=[me, update_me, change_my_password, list_all, disable, enable, issue_reset],
    tags=["users"],
)
