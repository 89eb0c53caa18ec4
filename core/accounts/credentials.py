"""Credentials: argon2 password hashes, signed JWT access/refresh tokens, and opaque API tokens.

Access tokens are short-lived JWTs (HS256, key from the `jwt_secret` setting) carrying only the user's id
and a token type; whether the user is still enabled, and their role, is read from the database on every
request, so disabling a user takes effect at once. API tokens (for the CLI) are random strings shown
once; only their SHA-256 is stored, so a database leak does not leak usable tokens.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from typing import Literal

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from remotegpu.core.platform import clock

API_TOKEN_PREFIX = "rgpu_"  # noqa: S105  # a public marker, not a secret
"""Every API token starts with this, so secret scanners and humans can recognise one."""

TokenType = Literal["access", "refresh"]

_hasher = PasswordHasher()
_ALGORITHM = "HS256"
_DUMMY_HASH = _hasher.hash("remotegpu: equalises login timing for unknown users")


def hash_password(password: str) -> str:
    """An argon2id hash of `password` (salted, with the library's recommended cost)."""
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether `password` matches; with no hash (unknown user) it still spends the same time, so the
    response time does not tell which e-mail addresses exist."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class IssuedToken:
    """A signed token and when it stops working."""

    token: str
    expires_at: dt.datetime


def issue_token(
    secret: str, user_id: uuid.UUID, kind: TokenType, lifetime: dt.timedelta, generation: int = 0
) -> IssuedToken:
    """Sign a token of `kind` for `user_id`, valid for `lifetime` while the user's token generation is
    still `generation` (a password change or reset moves it on)."""
    now = clock.now()
    expires = now + lifetime
    claims = {
        "sub": str(user_id),
        "typ": kind,
        "gen": generation,
        "iat": now,
        "exp": expires,
        "jti": secrets.token_hex(8),
    }
    return IssuedToken(jwt.encode(claims, secret, algorithm=_ALGORITHM), expires)


@dataclass(frozen=True)
class TokenClaims:
    """Whom a verified token names, and the token generation it was issued in."""

    user_id: uuid.UUID
    generation: int


def read_token(secret: str, token: str, kind: TokenType) -> TokenClaims | None:
    """The claims of a valid, unexpired token of `kind`; None for anything else (never raises). The
    caller compares `generation` with the user's."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[_ALGORITHM],
            options={"require": ["sub", "exp", "typ"]},
            leeway=dt.timedelta(seconds=5),
        )
        generation = claims.get("gen", 0)
        if claims.get("typ") != kind or not isinstance(generation, int):
            return None
        return TokenClaims(uuid.UUID(claims["sub"]), generation)
    except (jwt.PyJWTError, ValueError):
        return None


def new_api_token() -> str:
    """A fresh API token: the prefix and 32 random bytes, URL-safe."""
    return API_TOKEN_PREFIX + secrets.token_urlsafe(32)


def api_token_hash(token: str) -> str:
    """What the database stores and looks tokens up by."""
    return hashlib.sha256(token.encode()).hexdigest()
