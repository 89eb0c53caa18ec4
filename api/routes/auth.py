"""Sign-up, sign-in, token refresh, API tokens for the CLI, and the caller's own account."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Annotated

import msgspec
from litestar import Router, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import TooManyRequestsException
from litestar.params import FromPath, JSONBody

from remotegpu.api.context import AnyRequest, Api
from remotegpu.api.openapi import answers
from remotegpu.api.security import current_claims
from remotegpu.core.accounts.credentials import issue_token, read_token
from remotegpu.core.accounts.passwords import redeem_password_reset
from remotegpu.core.accounts.sign_in_limits import (
    SignInLimits,
    count_sign_in_attempt,
    forget_account_attempts,
)
from remotegpu.core.accounts.users import (
    authenticate_password,
    create_api_token,
    list_api_tokens,
    principal_by_id,
    register_user,
    revoke_api_token,
)
from remotegpu.core.platform.errors import AuthenticationError

Email = Annotated[str, msgspec.Meta(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=320)]
Username = Annotated[str, msgspec.Meta(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,63}$")]
Password = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]


class RegisterIn(msgspec.Struct, forbid_unknown_fields=True):
    """A new account."""

    email: Email
    username: Username
    password: Password


class LoginIn(msgspec.Struct, forbid_unknown_fields=True):
    """Sign-in with e-mail and password."""

    email: Annotated[str, msgspec.Meta(max_length=320)]
    password: Password


class RefreshIn(msgspec.Struct, forbid_unknown_fields=True):
    """A refresh token from a previous sign-in."""

    refresh_token: Annotated[str, msgspec.Meta(max_length=4096)]


class TokenOut(msgspec.Struct):
    """Bearer tokens: send `access_token`; trade `refresh_token` for a new pair before it expires."""

    access_token: str
    refresh_token: str
    token_type: str
    expires_at: dt.datetime
    refresh_expires_at: dt.datetime


class UserOut(msgspec.Struct):
    """A user account (never its password)."""

    id: uuid.UUID
    email: str
    username: str
    role: str
    disabled: bool = False
    display_name: str | None = None


class ResetIn(msgspec.Struct, forbid_unknown_fields=True):
    """A password reset token from a platform admin, and the new password."""

    reset_token: Annotated[str, msgspec.Meta(max_length=256)]
    new_password: Password


class ApiTokenIn(msgspec.Struct, forbid_unknown_fields=True):
    """An API token to mint; no `expires_in_days` means it lasts until revoked."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    expires_in_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] | None = None


class ApiTokenOut(msgspec.Struct):
    """An API token; `token` is present only in the response that created it."""

    id: uuid.UUID
    name: str
    prefix: str
    created_at: dt.datetime | None = None
    expires_at: dt.datetime | None = None
    revoked_at: dt.datetime | None = None
    token: str | None = None


def token_pair(api: Api, user_id: uuid.UUID, generation: int) -> TokenOut:
    """A new access and refresh token for the user's current token generation."""
    access = issue_token(api.jwt_secret, user_id, "access", api.access_token_lifetime, generation)
    refresh = issue_token(api.jwt_secret, user_id, "refresh", api.refresh_token_lifetime, generation)
    return TokenOut(access.token, refresh.token, "bearer", access.expires_at, refresh.expires_at)


@post("/register", status_code=201, sync_to_thread=True, opt=answers(409, public=True))
def register(data: JSONBody[RegisterIn], api: Api) -> UserOut:
    """Create an account (a regular user; platform admins are made with `remotegpu users create`)."""
    with api.transaction() as connection:
        user = register_user(connection, email=data.email, username=data.username, password=data.password)
    return UserOut(user.user_id, user.email, user.username, user.role.value)


@post("/login", status_code=200, sync_to_thread=True, opt=answers(401, 429, public=True))
def login(
    data: JSONBody[LoginIn], request: AnyRequest, api: Api, sign_in_limits: NamedDependency[SignInLimits]
) -> TokenOut:
    """Trade e-mail and password for tokens (rate limited per client address, and per account from
    each address: HTTP 429 with `Retry-After`)."""
    address = request.client.host if request.client else "unknown"
    with api.transaction() as connection:  # committed on its own: a refused attempt still counts
        refusal = count_sign_in_attempt(connection, sign_in_limits, address, data.email)
    if refusal is not None:
        seconds = refusal.retry_after_seconds
        raise TooManyRequestsException(
            detail=f"{refusal.reason}; try again in {seconds} seconds"
            f" (at {refusal.retry_at.isoformat(timespec='seconds').replace('+00:00', 'Z')})",
            headers={"Retry-After": str(seconds)},
        )
    with api.transaction() as connection:
        user = authenticate_password(connection, data.email, data.password)
        if user is not None:
            forget_account_attempts(connection, address, data.email)
    if user is None:
        raise AuthenticationError("e-mail or password is wrong, or the account is disabled")
    return token_pair(api, user.user_id, user.token_generation)


@post("/refresh", status_code=200, sync_to_thread=True, opt=answers(401, public=True))
def refresh(data: JSONBody[RefreshIn], api: Api) -> TokenOut:
    """Trade a valid refresh token for a new token pair (the user must still be enabled)."""
    claims = read_token(api.jwt_secret, data.refresh_token, "refresh")
    with api.transaction() as connection:
        user = principal_by_id(connection, claims.user_id) if claims else None
    if user is None or claims is None or not current_claims(user, claims):
        raise AuthenticationError(
            "the refresh token is invalid, expired or revoked (the password changed), or the user is"
            " disabled; sign in again"
        )
    return token_pair(api, user.user_id, user.token_generation)


@post("/reset", status_code=200, sync_to_thread=True, opt=answers(public=True))
def reset_password(data: JSONBody[ResetIn], api: Api) -> TokenOut:
    """Redeem a one-time reset token a platform admin issued: set a new password and sign in. Every
    earlier token of the user stops working. 422 for an unknown, used or expired token."""
    with api.transaction() as connection:
        user_id = redeem_password_reset(connection, data.reset_token, data.new_password)
        user = principal_by_id(connection, user_id)
    api.principals.clear()  # committed: this process forgets at once; the others on the NOTIFY
    if user is None:  # disabled in between: the redeem refused that already; kept for the type
        raise AuthenticationError("the account is disabled")
    return token_pair(api, user.user_id, user.token_generation)


@post("/tokens", status_code=201, sync_to_thread=True)
def create_token(data: JSONBody[ApiTokenIn], request: AnyRequest, api: Api) -> ApiTokenOut:
    """Mint a long-lived API token for the CLI; the response is the only time it is shown."""
    lifetime = dt.timedelta(days=data.expires_in_days) if data.expires_in_days else None
    with api.acting(request) as (connection, principal):
        created = create_api_token(connection, principal.user_id, data.name, lifetime)
    return ApiTokenOut(
        created.id, created.name, created.prefix, expires_at=created.expires_at, token=created.token
    )


@get("/tokens", sync_to_thread=True)
def list_tokens(request: AnyRequest, api: Api) -> list[ApiTokenOut]:
    """The caller's API tokens, without their secrets."""
    with api.acting(request) as (connection, principal):
        rows = list_api_tokens(connection, principal.user_id)
    return [ApiTokenOut(r.id, r.name, r.prefix, r.created_at, r.expires_at, r.revoked_at) for r in rows]


@delete("/tokens/{token_id:uuid}", sync_to_thread=True)
def revoke_token(token_id: FromPath[uuid.UUID], request: AnyRequest, api: Api) -> None:
    """Revoke one of the caller's API tokens; it stops working at once."""
    with api.acting(request) as (connection, principal):
        revoke_api_token(connection, principal.user_id, token_id)
    api.principals.clear()  # committed: this process forgets at once; the others on the NOTIFY


def make_router(sign_in_limits: Callable[[], SignInLimits]) -> Router:
    """The `/auth` router; sign-in counts its attempts against the limits `sign_in_limits()` gives now
    (the only route that does, so the rest of the API does not pay for it; a reload changes them)."""
    return Router(
        "/auth",
        route_handlers=[register, login, refresh, reset_password, create_token, list_tokens, revoke_token],
        dependencies={"sign_in_limits": Provide(sign_in_limits, sync_to_thread=False, use_cache=False)},
        tags=["auth"],
    )
