"""Who is calling: a Bearer credential (an API token or a JWT access token) resolved to a `Principal`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

from psycopg import AsyncConnection
from sqlalchemy import Connection

from remotegpu.core.accounts.credential_cache import PrincipalCache
from remotegpu.core.accounts.credentials import API_TOKEN_PREFIX, TokenClaims, api_token_hash, read_token
from remotegpu.core.accounts.users import (
    Principal,
    principal_by_api_token,
    principal_by_id,
    principal_by_id_async,
    token_owner_async,
)
from remotegpu.core.platform.errors import AuthenticationError
from remotegpu.core.platform.log_context import add_log_fields


def _credential(authorization: str | None) -> str:
    scheme, _, credential = (authorization or "").partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise AuthenticationError(
            "sign in first: send `Authorization: Bearer <token>` (see POST /api/v1/auth/login)"
        )
    return credential


def _known(principal: Principal | None) -> Principal:
    if principal is None:
        raise AuthenticationError(
            "the token is invalid, expired or revoked, or its user is disabled; sign in again"
        )
    add_log_fields(user=str(principal.user_id))  # the request's log line says who called
    return principal


def authenticate(connection: Connection, authorization: str | None, jwt_secret: str) -> Principal:
    """The enabled user behind `Authorization: Bearer …`; AuthenticationError for anything else.

    One query either way; the message never echoes the credential.
    """
    credential = _credential(authorization)
    if credential.startswith(API_TOKEN_PREFIX):
        return _known(principal_by_api_token(connection, credential))
    claims = read_token(jwt_secret, credential, "access")
    principal = principal_by_id(connection, claims.user_id) if claims else None
    return _known(principal if claims and current_claims(principal, claims) else None)


async def authenticate_async(
    connection: AsyncConnection[Any], authorization: str | None, jwt_secret: str, cache: PrincipalCache
) -> Principal:
    """`authenticate` on the event loop, for reads: answered from `cache` when it can be (see
    `core.accounts.credential_cache` for why that stays correct when credentials change)."""
    credential = _credential(authorization)
    if credential.startswith(API_TOKEN_PREFIX):
        key = "token:" + api_token_hash(credential)
        return _known(await _through_cache(cache, key, lambda: token_owner_async(connection, credential)))
    claims = read_token(jwt_secret, credential, "access")
    if claims is None:
        return _known(None)

    async def by_id() -> tuple[Principal, dt.datetime | None] | None:
        principal = await principal_by_id_async(connection, claims.user_id)
        return None if principal is None else (principal, None)

    principal = await _through_cache(cache, f"user:{claims.user_id}", by_id)
    return _known(principal if current_claims(principal, claims) else None)


def current_claims(principal: Principal | None, claims: TokenClaims) -> bool:
    """Whether a token of `claims` still works for `principal`: issued in the user's current token
    generation (a password change or reset moves it on, ending every earlier token)."""
    return principal is not None and principal.token_generation == claims.generation


async def _through_cache(
    cache: PrincipalCache,
    key: str,
    load: Callable[[], Awaitable[tuple[Principal, dt.datetime | None] | None]],
) -> Principal | None:
    """The cached principal for `key`, or the one `load()` finds (with its token's expiry), remembered
    unless the cache was emptied while it loaded (the generation taken before the query decides)."""
    cached = cache.get(key)
    if cached is not None:
        return cached
    generation = cache.generation
    loaded = await load()
    if loaded is None:
        return None
    cache.put(key, loaded[0], generation, loaded[1])
    return loaded[0]
