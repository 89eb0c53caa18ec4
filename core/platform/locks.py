"""Advisory locks with namespaced 64-bit keys.

A key is the first 8 bytes of BLAKE2b over `namespace:identifier`, read as a signed 64-bit integer (the
type Postgres advisory locks take), so keys from different namespaces cannot collide by construction
of the input. When a transaction needs several locks it must take them in `LockKey` order — namespace
rank first (members before quota before host), then identifier — and row locks after them, so two
transactions never wait on each other in a cycle. `xact_lock_all` does the sorting.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, TextClause, text
from sqlalchemy.orm import Session


class LockNamespace(enum.IntEnum):
    """What a lock protects; the value is the rank in the global lock order (lower first)."""

    LEADER = 0
    ENVIRONMENT_NAME = 3
    """One environment name in one workspace, the first lock of an apply: concurrent applies of a new name
    create it once (the second finds the first's and updates it)."""
    WORKSPACE_MEMBERS = 5
    """A workspace's member list: the first lock of every member change and of the workspace's deletion."""
    QUOTA_WORKSPACE = 10
    QUOTA_USER = 20
    HOST = 30
    REGISTRY_SYNC = 40
    """One registry's catalog entries: syncs of it write one at a time."""


@dataclass(frozen=True, order=True)
class LockKey:
    """One advisory lock: ordering follows the global lock order."""

    namespace: LockNamespace
    identifier: str
    value: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        digest = hashlib.blake2b(f"{self.namespace.name}:{self.identifier}".encode(), digest_size=8).digest()
        object.__setattr__(self, "value", int.from_bytes(digest, "big", signed=True))


def lock_key(namespace: LockNamespace, identifier: object) -> LockKey:
    """Return the key for `identifier` (a UUID, a shard number…) in `namespace`."""
    return LockKey(namespace, str(identifier))


Executor = Session | Connection


def xact_lock(executor: Executor, key: LockKey) -> None:
    """Block until the transaction holds `key`; Postgres releases it at commit or rollback."""
    executor.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key.value})


def xact_lock_all(executor: Executor, keys: Iterable[LockKey]) -> list[LockKey]:
    """Take every key in the global lock order (deduplicated) and return them in the order taken.

    One statement, one round trip: Postgres evaluates a select list left to right.
    """
    ordered = sorted(set(keys))
    if ordered:
        executor.execute(*lock_all_statement(ordered))
    return ordered


_LOCK_ALL_SQL: dict[int, TextClause] = {}
_TRY_LOCK_EACH_SQL: dict[int, TextClause] = {}
_TRY_LOCK_SQL = text("SELECT pg_try_advisory_xact_lock(:key)")


def lock_all_statement(keys: Iterable[LockKey]) -> tuple[TextClause, dict[str, int]]:
    """The statement of `xact_lock_all` (keys sorted and deduplicated), for a pipeline of statements.

    One `text()` per number of keys, built once: a pipeline compiles each constant once.
    """
    ordered = sorted(set(keys))
    count = len(ordered)
    if count not in _LOCK_ALL_SQL:
        calls = ", ".join(f"pg_advisory_xact_lock(:k{i}) AS k{i}" for i in range(count))
        _LOCK_ALL_SQL[count] = text(f"SELECT {calls}")
    return _LOCK_ALL_SQL[count], {f"k{i}": key.value for i, key in enumerate(ordered)}


def try_lock_statement(key: LockKey) -> tuple[TextClause, dict[str, int]]:
    """The statement of `try_xact_lock`, for a pipeline: its one row's one column says whether it held."""
    return _TRY_LOCK_SQL, {"key": key.value}


def try_xact_lock(executor: Executor, key: LockKey) -> bool:
    """Take `key` for the transaction if nobody holds it; never waits."""
    return bool(executor.execute(*try_lock_statement(key)).scalar_one())


def try_xact_lock_each(executor: Executor, keys: Iterable[LockKey]) -> set[LockKey]:
    """Try every key without waiting, in one round trip; returns the keys now held by the transaction.

    Never waiting is what makes the order irrelevant here: no cycle can form through a lock not waited on.
    """
    ordered = sorted(set(keys))
    if not ordered:
        return set()
    return held_of(ordered, executor.execute(*try_lock_each_statement(ordered)).one())


def try_lock_each_statement(ordered: Sequence[LockKey]) -> tuple[TextClause, dict[str, int]]:
    """The statement of `try_xact_lock_each` over `ordered` (sorted, distinct, at least one), for a
    pipeline; `held_of` reads its one row. One `text()` per number of keys, as `lock_all_statement`."""
    count = len(ordered)
    if count not in _TRY_LOCK_EACH_SQL:
        _TRY_LOCK_EACH_SQL[count] = text(
            "SELECT " + ", ".join(f"pg_try_advisory_xact_lock(:k{i}) AS k{i}" for i in range(count))
        )
    return _TRY_LOCK_EACH_SQL[count], {f"k{i}": key.value for i, key in enumerate(ordered)}


def held_of(ordered: Sequence[LockKey], row: Sequence[Any]) -> set[LockKey]:
    """The keys a `try_lock_each_statement` row says the transaction now holds."""
    return {key for key, taken in zip(ordered, row, strict=True) if taken}


def try_session_lock(connection: Connection, key: LockKey) -> bool:
    """Take `key` for the connection's whole session if nobody holds it; never waits.

    Session locks stack: a second successful call needs a second unlock. Callers that keep a lock
    (leader election) must remember they hold it instead of taking it again.
    """
    return bool(
        connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key.value}).scalar_one()
    )


def session_unlock(connection: Connection, key: LockKey) -> bool:
    """Release one hold of a session lock; False when this session did not hold it."""
    return bool(connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key.value}).scalar_one())
