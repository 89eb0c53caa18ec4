"""Who a credential belongs to, remembered per API process for read requests, and forgotten at once
when any credential changes.

Reads authenticate on every request; most requests carry a credential seen a moment before. The cache
answers those without a statement, under three rules that keep "a disabled user can do nothing" true:

- It is used only while this process LISTENs on `CREDENTIALS_CHANNEL`. Disabling or enabling a user and
  revoking a token NOTIFY that channel in their own transaction, and every notification empties the
  cache, so other processes forget within the time a notification takes to arrive (milliseconds); the
  process that made the change empties its own cache itself, before it answers.
- A lookup that raced with a change is not stored: `put` refuses an entry read before the last clear.
- Entries live `ttl` seconds at most, and never past the API token's own expiry.

Writes never use the cache: every mutation re-reads the user in its own transaction.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass

import psycopg
from sqlalchemy.engine import URL

from remotegpu.core.accounts.users import Principal
from remotegpu.core.platform import clock
from remotegpu.core.platform.notify import CREDENTIALS_CHANNEL

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Entry:
    principal: Principal
    until: float
    token_expires_at: dt.datetime | None


class PrincipalCache:
    """Credential key → Principal, thread-safe (event loop and worker threads share it)."""

    def __init__(self, ttl_seconds: float = 30.0, max_entries: int = 10_000) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._entries: dict[str, _Entry] = {}
        self._generation = 0
        self._listening = False
        self._lock = threading.Lock()

    @property
    def generation(self) -> int:
        """Read before a database lookup and hand to `put`, so a lookup older than a clear is dropped."""
        return self._generation

    def get(self, key: str) -> Principal | None:
        """The cached principal, if the cache is live and the entry still valid."""
        with self._lock:
            entry = self._entries.get(key) if self._listening else None
            if entry is None:
                return None
            expired = entry.token_expires_at is not None and entry.token_expires_at <= clock.now()
            if expired or entry.until <= time.monotonic():
                del self._entries[key]
                return None
            return entry.principal

    def put(
        self, key: str, principal: Principal, generation: int, token_expires_at: dt.datetime | None
    ) -> None:
        """Remember a lookup made at `generation` (ignored if anything changed since, or not listening)."""
        with self._lock:
            if not self._listening or generation != self._generation:
                return
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key] = _Entry(principal, time.monotonic() + self.ttl_seconds, token_expires_at)

    def clear(self) -> None:
        """Forget everything (a credential changed somewhere)."""
        with self._lock:
            self._generation += 1
            self._entries.clear()

    def set_listening(self, listening: bool) -> None:
        """Use the cache only while invalidations can arrive."""
        with self._lock:
            self._listening = listening
            self._generation += 1
            self._entries.clear()


async def listen_for_credential_changes(cache: PrincipalCache, url: URL) -> None:
    """Keep a LISTEN connection open and empty `cache` on every notification; reconnect on failure
    (the cache is off while disconnected). Runs until cancelled."""
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as connection:
                await connection.execute(f"LISTEN {CREDENTIALS_CHANNEL}")
                cache.set_listening(True)
                async for _ in connection.notifies():
                    cache.clear()
        except (psycopg.Error, OSError) as error:
            _log.warning("Credential listener lost its connection", extra={"error": str(error)})
        finally:
            cache.set_listening(False)
        await asyncio.sleep(1.0)
