"""Leader election per shard: a session advisory lock on a dedicated connection, plus a fencing epoch.

The lock says who may lead; the epoch makes a stale leader harmless. Taking over increments the
shard's epoch, and every reconciler write transaction ends with `fence()`: a `FOR SHARE` read of the
shard row at the writer's epoch. A takeover's epoch increment waits for those readers, and after it
commits no write at the old epoch can pass, so a leader that lost its connection (or was paused past
its lease) can never write again.

Pitfalls handled here, each tested:
- Session locks stack: a leader never calls `pg_try_advisory_lock` again while it holds the lock.
- In-process flags lie: every heartbeat pings the lock connection (and checks the epoch); any error
  means leadership is gone at once, before anything else happens.
- A client-side timeout during the lock call may leave the lock held by the server session: on any
  error while acquiring, the connection is thrown away, which ends the session and frees the lock.
- Transaction poolers (PgBouncer in transaction mode) hand a session to other clients between
  transactions, so a session lock would not mean anything: a URL that names one is refused.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import socket
import uuid

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from remotegpu.core.platform.db import normalise_url
from remotegpu.core.platform.errors import RemoteGPUError, SettingsError
from remotegpu.core.platform.locks import LockNamespace, lock_key, session_unlock

log = logging.getLogger(__name__)

POOLER_PORTS = frozenset({6432})
POOLER_HOST_WORDS = ("pgbouncer", "pooler", "pgcat", "odyssey")


class FencedOutError(RemoteGPUError):
    """This reconciler's epoch is no longer current: another leader has taken over the shard."""


def check_direct_connection(url: URL | str) -> None:
    """Refuse a URL that names a connection pooler; the leader lock needs a direct session."""
    parsed = make_url(url) if isinstance(url, str) else url
    host = (parsed.host or "").lower()
    named = (
        parsed.port in POOLER_PORTS
        or any(word in host for word in POOLER_HOST_WORDS)
        or str(parsed.query.get("pgbouncer", "")).lower() in {"true", "1"}
    )
    if named:
        raise SettingsError(
            "database_url: the reconciler's leader lock needs a direct Postgres connection, not a"
            f" connection pooler ({parsed.render_as_string(hide_password=True)}); point it at Postgres itself"
        )


def default_identity() -> str:
    """A readable, unique name for this reconciler process."""
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"


_TAKE_OVER_SQL = text(
    """
    WITH taken AS (
        INSERT INTO shard_leaders (shard, epoch, leader_id, leader_since, heartbeat_at)
        VALUES (:shard, 1, :identity, now(), now())
        ON CONFLICT (shard) DO UPDATE SET epoch = shard_leaders.epoch + 1, leader_id = EXCLUDED.leader_id,
            leader_since = now(), heartbeat_at = now(), updated_at = now()
        RETURNING shard, epoch, leader_since
    ), term AS (
        INSERT INTO leader_terms (shard, epoch, leader_id, began_at)
        SELECT shard, epoch, :identity, clock_timestamp() FROM taken
        ON CONFLICT (shard, epoch) DO UPDATE SET leader_id = EXCLUDED.leader_id, began_at = EXCLUDED.began_at
        RETURNING epoch
    )
    SELECT taken.epoch, taken.leader_since FROM taken JOIN term USING (epoch)
    """
)
"""Takes the shard and records the term. The term's `began_at` is read after the upsert holds the shard
row, which waits for every transaction fenced at the old epoch: each committed before it."""
_HEARTBEAT_SQL = text(
    "UPDATE shard_leaders SET heartbeat_at = now() WHERE shard = :shard AND epoch = :epoch RETURNING epoch"
)
FENCE_SELECT = "SELECT 1 FROM shard_leaders WHERE shard = :shard AND epoch = :epoch FOR SHARE"
"""The fencing check as SQL (parameters `shard`, `epoch`): a row while `epoch` leads, share-locked until
the transaction ends, so a takeover waits for it. Writes that are one statement embed it as a CTE."""
_FENCE_SQL = text(FENCE_SELECT)


def fence(connection: Connection, shard: int, epoch: int) -> None:
    """Raise `FencedOutError` unless `epoch` still leads `shard`; the last statement of every write."""
    if connection.execute(_FENCE_SQL, {"shard": shard, "epoch": epoch}).first() is None:
        raise FencedOutError(f"epoch {epoch} no longer leads shard {shard}")


class LeaderElector:
    """Campaigns for one shard and keeps (or loses) its leadership."""

    lock_sql = text("SELECT pg_try_advisory_lock(:key)")
    """The acquiring statement; tests replace it to simulate a slow server."""

    def __init__(
        self,
        url: URL | str,
        *,
        shard: int = 0,
        identity: str | None = None,
        acquire_timeout_s: float = 5.0,
        idle_timeout_s: float = 5.0,
    ) -> None:
        check_direct_connection(url)
        self.shard = shard
        self.identity = identity or default_identity()
        self.epoch: int | None = None
        self.since: dt.datetime | None = None
        self._key = lock_key(LockNamespace.LEADER, shard)
        self._timeout_ms = int(acquire_timeout_s * 1000)
        self._idle_timeout_ms = int(idle_timeout_s * 1000)
        self._engine: Engine = create_engine(
            normalise_url(url),
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args={
                "application_name": f"remotegpu-leader-{self.identity}"[:63],
                "connect_timeout": max(1, int(acquire_timeout_s)),
            },
        )
        self._connection: Connection | None = None

    @property
    def is_leader(self) -> bool:
        """What this process last established; `heartbeat()` re-checks it against the server."""
        return self.epoch is not None

    def campaign(self) -> bool:
        """Try once to become leader; True when this process leads (already or now)."""
        if self.is_leader:
            return self.heartbeat()  # never take a held session lock again: it would stack
        try:
            connection = self._connect()
            connection.execute(text(f"SET statement_timeout = {self._timeout_ms}"))
            # A paused leader (SIGSTOP, a stalled VM) keeps its TCP session and so its lock; the server
            # ends a session idle this long, which a healthy leader's heartbeats never let happen.
            connection.execute(text(f"SET idle_session_timeout = {self._idle_timeout_ms}"))
            if not connection.execute(self.lock_sql, {"key": self._key.value}).scalar_one():
                return False
            row = connection.execute(_TAKE_OVER_SQL, {"shard": self.shard, "identity": self.identity}).one()
        except Exception as error:
            # The server may have granted the lock before the client gave up: end the session to free it.
            log.warning("Leadership campaign failed", extra={"shard": self.shard, "error": repr(error)})
            self._drop_connection()
            return False
        self.epoch, self.since = int(row.epoch), row.leader_since
        log.info(
            "Leadership acquired", extra={"shard": self.shard, "epoch": self.epoch, "identity": self.identity}
        )
        return True

    def heartbeat(self) -> bool:
        """Ping the lock connection and confirm the epoch; step down at the first sign of trouble."""
        if self._connection is None or self.epoch is None:
            return False
        try:
            row = self._connection.execute(_HEARTBEAT_SQL, {"shard": self.shard, "epoch": self.epoch}).first()
        except Exception as error:
            self.step_down(f"lock connection failed: {error.__class__.__name__}")
            return False
        if row is None:
            self.step_down("epoch superseded")
            return False
        return True

    def step_down(self, reason: str) -> None:
        """Stop leading now: forget the epoch and end the lock session."""
        if self.epoch is not None:
            level = logging.INFO if reason == "resigned" else logging.WARNING
            log.log(
                level, "Leadership lost", extra={"shard": self.shard, "epoch": self.epoch, "reason": reason}
            )
        self.epoch = None
        self.since = None
        self._drop_connection()

    def resign(self) -> None:
        """Give leadership up cleanly (shutdown): unlock, then close."""
        if self._connection is not None and self.epoch is not None:
            with contextlib.suppress(Exception):  # closing the session below frees the lock anyway
                session_unlock(self._connection, self._key)
        self.step_down("resigned")

    def close(self) -> None:
        """Resign and release every resource."""
        self.resign()
        self._engine.dispose()

    def backend_pid(self) -> int | None:
        """The server process of the lock session (tests terminate it)."""
        if self._connection is None:
            return None
        return int(self._connection.execute(text("SELECT pg_backend_pid()")).scalar_one())

    def _connect(self) -> Connection:
        if self._connection is None:
            self._connection = self._engine.connect()
        return self._connection

    def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.invalidate()
                connection.close()
            except Exception:  # noqa: S110 - the connection is already gone, which is what we want
                pass
