"""Who is calling: a Bearer credential (an API token or a JWT access token) resolved to a `Principal`."""

from __future__ import annotations

from sqlalchemy import Connection

from remotegpu.core.accounts import Principal, principal_by_api_token, principal_by_id
from remotegpu.core.credentials import API_TOKEN_PREFIX, read_token
from remotegpu.core.errors import AuthenticationError


def authenticate(connection: Connection, authorization: str | None, jwt_secret: str) -> Principal:
    """The enabled user behind `Authorization: Bearer …`; AuthenticationError for anything else.

    One query either way; the message never echoes the credential.
    """
    scheme, _, credential = (authorization or "").partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise AuthenticationError(
            "sign in first: send `Authorization: Bearer <token>` (see POST /api/v1/auth/login)"
        )
    if credential.startswith(API_TOKEN_PREFIX):
        principal = principal_by_api_token(connection, credential)
    else:
        user_id = read_token(jwt_secret, credential, "access")
        principal = principal_by_id(connection, user_id) if user_id else None
    if principal is None:
        raise AuthenticationError(
            "the token is invalid, expired or revoked, or its user is disabled; sign in again"
        )
    return principal
