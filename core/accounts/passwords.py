"""Passwords a user manages: the policy every new password meets, a change by the user, and a one-time
reset a platform admin issues.

A change or a reset increments the user's `token_generation`, which every access and refresh token
carries, so every token issued before stops working at once (`api.security` compares them), and revokes
the user's API tokens — except, for a change, the API token the change was made with (the CLI stays
signed in). Each NOTIFYs the credentials channel in its transaction, so every API process forgets the
cached principal. A reset token is random, shown once, stored as its SHA-256 only, expires, works once,
and a newer reset of the same user voids the older ones.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import Connection, text

from remotegpu.core.accounts.credentials import hash_password, verify_password
from remotegpu.core.accounts.password_policy import check_password_policy
from remotegpu.core.accounts.users import Principal
from remotegpu.core.platform import clock
from remotegpu.core.platform.errors import InvalidInputError, NotFoundError
from remotegpu.core.platform.events import record_mutation
from remotegpu.core.platform.notify import notify_credentials_changed

RESET_TOKEN_PREFIX = "rgpr_"  # noqa: S105  # a public marker, not a secret
"""Every reset token starts with this, so it is recognisable (and never mistaken for an API token)."""


_USER_SQL = text(
    "SELECT id, email, username, password_hash, disabled, token_generation FROM users WHERE id = :id FOR UPDATE"
)
_SET_PASSWORD_SQL = text(
    "UPDATE users SET password_hash = :hash, token_generation = token_generation + 1, updated_at = now()"
    " WHERE id = :id RETURNING token_generation"
)
_REVOKE_API_TOKENS_SQL = text(
    "UPDATE api_tokens SET revoked_at = :now WHERE user_id = :id AND revoked_at IS NULL"
    " AND token_hash IS DISTINCT FROM :keep"
)


def change_password(
    connection: Connection, principal: Principal, old: str, new: str, *, keep_api_token_hash: str | None
) -> int:
    """Change the caller's password; returns the new token generation (for the caller's new tokens)."""
    row = connection.execute(_USER_SQL, {"id": principal.user_id}).one()
    if not verify_password(row.password_hash, old):
        raise InvalidInputError("$.old_password", "is not your current password")
    if new == old:
        raise InvalidInputError("$.new_password", "is your current password; choose a new one")
    check_password_policy(new, field="$.new_password", email=row.email, username=row.username)
    generation = _set_password(connection, row.id, new, keep_api_token_hash)
    record_mutation(
        connection, principal.user_id, "PasswordChanged", "changed their password; earlier tokens revoked"
    )
    return generation


def _set_password(connection: Connection, user_id: uuid.UUID, new: str, keep: str | None) -> int:
    generation = int(
        connection.execute(_SET_PASSWORD_SQL, {"id": user_id, "hash": hash_password(new)}).scalar_one()
    )
    connection.execute(_REVOKE_API_TOKENS_SQL, {"id": user_id, "now": clock.now(), "keep": keep})
    notify_credentials_changed(connection)
    return generation


@dataclass(frozen=True)
class IssuedReset:
    """A reset token, shown once."""

    user_id: uuid.UUID
    token: str
    expires_at: dt.datetime


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_password_reset(
    connection: Connection, admin: Principal, user_id: uuid.UUID, lifetime: dt.timedelta
) -> IssuedReset:
    """A one-time reset token for `user_id` (platform admins only); earlier unused ones stop working."""
    admin.require_admin()
    if connection.execute(text("SELECT 1 FROM users WHERE id = :id"), {"id": user_id}).first() is None:
        raise NotFoundError("user not found", "$.user_id")
    now = clock.now()
    connection.execute(
        text("UPDATE password_resets SET used_at = :now WHERE user_id = :id AND used_at IS NULL"),
        {"id": user_id, "now": now},
    )
    token = RESET_TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires = now + lifetime
    connection.execute(
        text(
            "INSERT INTO password_resets (user_id, token_hash, issued_by, expires_at)"
            " VALUES (:id, :hash, :admin, :expires)"
        ),
        {"id": user_id, "hash": _hash(token), "admin": admin.user_id, "expires": expires},
    )
    record_mutation(
        connection,
        admin.user_id,
        "PasswordResetIssued",
        f"issued a password reset for user {user_id}",
        data={"user_id": str(user_id), "expires_at": expires.isoformat()},
    )
    return IssuedReset(user_id, token, expires)


def redeem_password_reset(connection: Connection, token: str, new: str) -> uuid.UUID:
    """Set a new password with a reset token; returns the user. An unknown, used or expired token, or
    a disabled user, is one answer (nothing tells which)."""
    reset = connection.execute(
        text(
            "SELECT r.id, r.user_id, u.email, u.username FROM password_resets r JOIN users u ON u.id = r.user_id"
            " WHERE r.token_hash = :hash AND r.used_at IS NULL AND r.expires_at > :now AND NOT u.disabled"
            " FOR UPDATE OF r"
        ),
        {"hash": _hash(token), "now": clock.now()},
    ).one_or_none()
    if reset is None:
        raise InvalidInputError(
            "$.reset_token", "is unknown, used or expired; ask a platform admin for a new one"
        )
    check_password_policy(new, field="$.new_password", email=reset.email, username=reset.username)
    connection.execute(_USER_SQL, {"id": reset.user_id}).one()  # lock the user as a change does
    _set_password(connection, reset.user_id, new, None)
    connection.execute(
        text("UPDATE password_resets SET used_at = :now WHERE id = :id"), {"id": reset.id, "now": clock.now()}
    )
    return uuid.UUID(str(reset.user_id))


def set_display_name(connection: Connection, principal: Principal, display_name: str | None) -> None:
    """The caller's display name (None or blank: show the username)."""
    name = (display_name or "").strip() or None
    connection.execute(
        text("UPDATE users SET display_name = :name, updated_at = now() WHERE id = :id"),
        {"name": name, "id": principal.user_id},
    )
