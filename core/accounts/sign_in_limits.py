"""Sign-in rate limits, counted in Postgres so that every API worker and replica enforces one limit.

Two limits, each a fixed window per subject that opens at the subject's first attempt (one row of
`sign_in_counters`, updated by one `INSERT … ON CONFLICT … RETURNING`):

- **per client address**: every sign-in attempt from one address (`login_attempts_per_minute` a
  minute). It bounds what one machine can try, whatever accounts it aims at.
- **per account and address**: attempts at one account from one address since that address last signed
  in to it (`login_failures_per_account_per_hour` an hour). It slows guessing one account's password
  tenfold or more beyond the address limit. It is counted per account *and* address, not per account,
  on purpose: a per-account lock-out would let any stranger lock the owner out by failing on purpose;
  counted this way a stranger only ever locks out their own address, and the owner, signing in from
  theirs, is never refused. A success from an address clears its count for that account.

Both counts are taken before the password is checked, so a refused attempt costs no argon2 work and
learns nothing, and concurrent attempts cannot slip between a check and an increment. A fixed window may
let up to twice a limit through around a window's end (a sliding one would not, at the cost of more
state); processes compare window ends with their own clocks, kept in step as the tokens' expiry already
needs. Subjects are stored as SHA-256 hashes: the table holds no e-mail or address in the clear. Rows whose
window has ended are deleted by later sign-ins, a bounded batch at a time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from dataclasses import dataclass

from sqlalchemy import Connection, text

from remotegpu.core.platform import clock

ADDRESS_WINDOW = dt.timedelta(minutes=1)
ACCOUNT_WINDOW = dt.timedelta(hours=1)
_CLEANUP_BATCH = 100
"""Ended rows one sign-in deletes at most: more than it adds (two), so the table stays small."""


@dataclass(frozen=True)
class SignInLimits:
    """How many sign-in attempts each subject may make per window."""

    per_address: int
    """Attempts from one client address per `ADDRESS_WINDOW`."""
    per_account: int
    """Attempts at one account from one client address per `ACCOUNT_WINDOW`, until one succeeds."""


@dataclass(frozen=True)
class SignInRefusal:
    """A sign-in refused for exceeding a limit: why, and when to try again."""

    reason: str
    retry_at: dt.datetime
    retry_after_seconds: int


# Both subjects counted in one statement; the CTE deletes ended rows of other subjects (never this
# request's two: a row must not be deleted and upserted by one statement), skipping rows being written.
_COUNT_SQL = text(
    f"""
    WITH ended AS (
        DELETE FROM sign_in_counters WHERE (scope, key) IN (
            SELECT scope, key FROM sign_in_counters
            WHERE window_end <= :now AND key NOT IN (:address_key, :account_key)
            LIMIT {_CLEANUP_BATCH} FOR UPDATE SKIP LOCKED
        )
    )
    INSERT INTO sign_in_counters AS c (scope, key, window_start, window_end, attempts)
    VALUES ('address', :address_key, :now, :address_end, 1),
           ('account', :account_key, :now, :account_end, 1)
    ON CONFLICT (scope, key) DO UPDATE SET
        -- an ended window restarts the count, in a window that opens now
        attempts = CASE WHEN c.window_end > :now THEN c.attempts + 1 ELSE 1 END,
        window_start = CASE WHEN c.window_end > :now THEN c.window_start ELSE EXCLUDED.window_start END,
        window_end = CASE WHEN c.window_end > :now THEN c.window_end ELSE EXCLUDED.window_end END
    RETURNING c.scope, c.attempts, c.window_end
    """
)


def count_sign_in_attempt(
    connection: Connection, limits: SignInLimits, address: str, email: str
) -> SignInRefusal | None:
    """Count one sign-in attempt from `address` at the account `email`, committed with `connection`'s
    transaction (it must commit even when the attempt is refused); a refusal when either limit is now
    exceeded (the one that ends last when both are), else None."""
    now = clock.now()
    rows = connection.execute(
        _COUNT_SQL,
        {
            "now": now,
            "address_key": _address_key(address),
            "account_key": _account_key(address, email),
            "address_end": now + ADDRESS_WINDOW,
            "account_end": now + ACCOUNT_WINDOW,
        },
    ).all()
    allowed = {"address": limits.per_address, "account": limits.per_account}
    exceeded = [row for row in rows if row.attempts > allowed[row.scope]]
    if not exceeded:
        return None
    last = max(exceeded, key=lambda row: row.window_end)
    reason = (
        "too many sign-in attempts from this address"
        if last.scope == "address"
        else "too many sign-in attempts at this account from this address"
    )
    seconds = max(1, math.ceil((last.window_end - now).total_seconds()))
    return SignInRefusal(reason, last.window_end, seconds)


def forget_account_attempts(connection: Connection, address: str, email: str) -> None:
    """Clear the count of `email` from `address` after a successful sign-in from there."""
    connection.execute(
        text("DELETE FROM sign_in_counters WHERE scope = 'account' AND key = :key"),
        {"key": _account_key(address, email)},
    )


def _address_key(address: str) -> str:
    return hashlib.sha256(f"address\0{address}".encode()).hexdigest()


def _account_key(address: str, email: str) -> str:
    # The same normalisation as sign-in itself, so `Alice@…` and `alice@…` are one account.
    return hashlib.sha256(f"account\0{email.strip().lower()}\0{address}".encode()).hexdigest()
