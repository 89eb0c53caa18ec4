"""Users and their credentials: registration, sign-in, API tokens, and who a request comes from.

Resolving a credential to a `Principal` is one indexed query, and it always re-reads `disabled` and
`role`, so a disabled user is refused from their next request on, whatever tokens they hold.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from remotegpu.core.accounts.credentials import api_token_hash, hash_password, new_api_token, verify_password
from remotegpu.core.accounts.password_policy import check_password_policy
from remotegpu.core.environments.states import UserRole
from remotegpu.core.platform import clock
from remotegpu.core.platform.db import fetch_one
from remotegpu.core.platform.errors import ConflictError, ForbiddenError, NotFoundError
from remotegpu.core.platform.events import record_mutation
from remotegpu.core.platform.notify import notify_credentials_changed
from remotegpu.core.platform.pagination import decode_cursor, page


@dataclass(frozen=True)
class Principal:
    """The signed-in user a request acts for."""

    user_id: uuid.UUID
    username: str
    email: str
    role: UserRole
    token_generation: int = 0
    """The user's current token generation: access and refresh tokens of another one are refused."""
    display_name: str | None = None

    @property
    def is_admin(self) -> bool:
        """Platform administrator: sees and manages every workspace, host and quota."""
        return self.role is UserRole.ADMIN

    def require_admin(self) -> None:
        """Raise ForbiddenError unless the caller is a platform administrator."""
        if not self.is_admin:
            raise ForbiddenError("this needs a platform administrator")


_USER_COLUMNS = (
    "u.id, u.username, u.email, u.role, u.disabled, u.created_at, u.token_generation, u.display_name"
)


# Run on every request: built once, so SQLAlchemy's statement cache finds them at once.
_PRINCIPAL_BY_ID_SQL = text(f"SELECT {_USER_COLUMNS} FROM users u WHERE u.id = :id AND NOT u.disabled")
_PRINCIPAL_BY_TOKEN_SQL = text(
    f"SELECT {_USER_COLUMNS}, t.expires_at AS token_expires_at FROM api_tokens t JOIN users u ON u.id = t.user_id"
    " WHERE t.token_hash = :hash AND t.revoked_at IS NULL"
    " AND (t.expires_at IS NULL OR t.expires_at > :now) AND NOT u.disabled"
)


def _principal(row: Any) -> Principal:
    return Principal(
        row.id,
        row.username,
        row.email,
        UserRole(row.role),
        row.token_generation,
        row.display_name,
    )


def register_user(
    connection: Connection, *, email: str, username: str, password: str, role: UserRole = UserRole.USER
) -> Principal:
    """Create a user. The e-mail is stored lower-cased; a taken e-mail or username is a conflict."""
    email = email.strip().lower()
    check_password_policy(password, field="$.password", email=email, username=username)
    # No savepoint: a refused INSERT aborts the transaction, which the raise below ends anyway.
    try:
        row = connection.execute(
            text(
                "INSERT INTO users (email, username, password_hash, role)"
                " VALUES (:email, :username, :hash, :role)"
                " RETURNING id, username, email, role, token_generation, display_name"
            ),
            {"email": email, "username": username, "hash": hash_password(password), "role": role.value},
        ).one()
    except IntegrityError as error:
        field = "email" if "email" in str(error.orig) else "username"
        raise ConflictError("already registered; sign in or choose another", f"$.{field}") from None
    return _principal(row)


def authenticate_password(connection: Connection, email: str, password: str) -> Principal | None:
    """The enabled user with this e-mail and password, or None (same time taken either way)."""
    row = connection.execute(
        text(f"SELECT {_USER_COLUMNS}, u.password_hash FROM users u WHERE u.email = :email"),
        {"email": email.strip().lower()},
    ).one_or_none()
    if not verify_password(row.password_hash if row else None, password) or row is None or row.disabled:
        return None
    return _principal(row)


def principal_by_id(connection: Connection, user_id: uuid.UUID) -> Principal | None:
    """The enabled user with this id (from a verified JWT), or None."""
    row = connection.execute(_PRINCIPAL_BY_ID_SQL, {"id": user_id}).one_or_none()
    return _principal(row) if row else None


async def principal_by_id_async(connection: AsyncConnection[Any], user_id: uuid.UUID) -> Principal | None:
    """`principal_by_id` on the event loop."""
    row = await fetch_one(connection, _PRINCIPAL_BY_ID_SQL, {"id": user_id})
    return _principal(row) if row else None


async def token_owner_async(
    connection: AsyncConnection[Any], token: str
) -> tuple[Principal, dt.datetime | None] | None:
    """The enabled owner of a live API token and when the token expires, on the event loop."""
    row = await fetch_one(
        connection, _PRINCIPAL_BY_TOKEN_SQL, {"hash": api_token_hash(token), "now": clock.now()}
    )
    return (_principal(row), row.token_expires_at) if row else None


def principal_by_api_token(connection: Connection, token: str) -> Principal | None:
    """The enabled owner of a live (unrevoked, unexpired) API token, or None."""
    row = connection.execute(
        _PRINCIPAL_BY_TOKEN_SQL, {"hash": api_token_hash(token), "now": clock.now()}
    ).one_or_none()
    return _principal(row) if row else None


@dataclass(frozen=True)
class CreatedApiToken:
    """A new API token; `token` is shown this once and never again."""

    id: uuid.UUID
    name: str
    token: str
    prefix: str
    expires_at: dt.datetime | None


def create_api_token(
    connection: Connection, user_id: uuid.UUID, name: str, lifetime: dt.timedelta | None
) -> CreatedApiToken:
    """Mint an API token for `user_id`; only its hash is stored."""
    token = new_api_token()
    expires = clock.now() + lifetime if lifetime else None
    prefix = token[:12]
    token_id = connection.execute(
        text(
            "INSERT INTO api_tokens (user_id, name, token_hash, token_prefix, expires_at)"
            " VALUES (:user, :name, :hash, :prefix, :expires) RETURNING id"
        ),
        {"user": user_id, "name": name, "hash": api_token_hash(token), "prefix": prefix, "expires": expires},
    ).scalar_one()
    return CreatedApiToken(token_id, name, token, prefix, expires)


def list_api_tokens(connection: Connection, user_id: uuid.UUID) -> list[Any]:
    """The user's tokens (never the secret), newest first."""
    return list(
        connection.execute(
            text(
                "SELECT id, name, token_prefix AS prefix, created_at, expires_at, revoked_at FROM api_tokens"
                " WHERE user_id = :user ORDER BY created_at DESC, id"
            ),
            {"user": user_id},
        )
    )


def revoke_api_token(connection: Connection, user_id: uuid.UUID, token_id: uuid.UUID) -> None:
    """Revoke one of the user's tokens; revoking twice is fine, someone else's token is not found."""
    found = connection.execute(
        text(
            "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, :now)"
            " WHERE id = :id AND user_id = :user RETURNING id"
        ),
        {"id": token_id, "user": user_id, "now": clock.now()},
    ).scalar()
    if found is None:
        raise NotFoundError(f"API token {token_id} not found")
    notify_credentials_changed(connection)


def list_users(connection: Connection, *, limit: int, cursor: str | None) -> tuple[list[Any], str | None]:
    """Every user by id, for administrators: one page and the next page's cursor."""
    after = decode_cursor(cursor, (uuid.UUID,))
    rows = list(
        connection.execute(
            text(
                f"SELECT {_USER_COLUMNS} FROM users u"
                " WHERE (CAST(:after AS uuid) IS NULL OR u.id > CAST(:after AS uuid)) ORDER BY u.id LIMIT :limit"
            ),
            {"after": after[0] if after else None, "limit": limit + 1},
        )
    )
    return page(rows, limit, lambda row: (row.id,))


def get_user(connection: Connection, user_id: uuid.UUID) -> Any:
    """One user's public fields; NotFoundError when there is none."""
    row = connection.execute(
        text(f"SELECT {_USER_COLUMNS} FROM users u WHERE u.id = :id"), {"id": user_id}
    ).one_or_none()
    if row is None:
        raise NotFoundError(f"user {user_id} not found")
    return row


def set_user_disabled(
    connection: Connection, user_id: uuid.UUID, disabled: bool, *, actor_id: uuid.UUID
) -> Any:
    """Disable or re-enable a user, recording `actor_id` as who did it; a disabled user's tokens stop
    working at once.

    Nobody disables themselves, and the last active platform admin is never disabled: the platform would
    have nobody left to administer it (ConflictError).
    """
    if disabled:
        _refuse_locking_out_the_platform(connection, user_id, actor_id)
    row = connection.execute(
        text(
            "UPDATE users u SET disabled = :disabled, updated_at = now() WHERE u.id = :id"
            f" RETURNING {_USER_COLUMNS}"
        ),
        {"id": user_id, "disabled": disabled},
    ).one_or_none()
    if row is None:
        raise NotFoundError(f"user {user_id} not found")
    notify_credentials_changed(connection)
    record_mutation(connection, actor_id, "UserDisabled" if disabled else "UserEnabled", row.email)
    return row


def _refuse_locking_out_the_platform(connection: Connection, user_id: uuid.UUID, actor_id: uuid.UUID) -> None:
    if user_id == actor_id:
        raise ConflictError("you cannot disable yourself; ask another platform admin")
    # Every active admin row locked, in id order: two admins disabling each other at once are serialised,
    # and the second sees the first's change (Read Committed re-reads a locked row), so one admin stays.
    admins = connection.execute(
        text("SELECT id FROM users WHERE role = :admin AND NOT disabled ORDER BY id FOR UPDATE"),
        {"admin": UserRole.ADMIN.value},
    ).scalars()
    if set(admins) == {user_id}:
        raise ConflictError("this is the last active platform admin; make another user admin first")


def find_user_id(connection: Connection, reference: str) -> uuid.UUID:
    """A user's id from their id, e-mail or username (how admins and owners name people)."""
    try:
        as_id: uuid.UUID | None = uuid.UUID(reference)
    except ValueError:
        as_id = None
    found = connection.execute(
        text(
            "SELECT id FROM users WHERE id = :id OR email = lower(:ref) OR username = :ref"
            " ORDER BY (id = :id) DESC LIMIT 1"
        ),
        {"id": as_id, "ref": reference},
    ).scalar()
    if found is None:
        raise NotFoundError(f"user {reference!r} not found")
    return uuid.UUID(str(found))
