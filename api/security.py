"""Who is calling: a Bearer credential (an API token or a JWT access token) resolved to a `Principal`."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from sqlalchemy import Connection

from remotegpu.core.accounts import (
    Principal,
    principal_by_api_token,
    principal_by_api_token_async,
    principal_by_id,
    principal_by_id_async,
)
from remotegpu.core.credentials import API_TOKEN_PREFIX, read_token
from remotegpu.core.errors import AuthenticationError


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
    return principal


def authenticate(connection: Connection, authorization: str | None, jwt_secret: str) -> Principal:
    """The enabled user behind `Authorization: Bearer …`; AuthenticationError for anything else.

    One query either way; the message never echoes the credential.
    """
    credential = _credential(authorization)
    if credential.startswith(API_TOKEN_PREFIX):
        return _known(principal_by_api_token(connection, credential))
    user_id = read_token(jwt_secret, credential, "access")
    return _known(principal_by_id(connection, user_id) if user_id else None)


async def authenticate_async(
    connection: AsyncConnection[Any], authorization: str | None, jwt_secret: str
) -> Principal:
    """`authenticate` on the event loop."""
    credential = _credential(authorization)
    if credential.startswith(API_TOKEN_PREFIX):
        return _known(await principal_by_api_token_async(connection, credential))
    user_id = read_token(jwt_secret, credential, "access")
    return _known(await principal_by_id_async(connection, user_id) if user_id else None)
