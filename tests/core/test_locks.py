"""Advisory-lock helpers against real Postgres, with two connections."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import OperationalError

from remotegpu.core.platform.locks import (
    LockNamespace,
    lock_key,
    session_unlock,
    try_session_lock,
    try_xact_lock,
    xact_lock,
    xact_lock_all,
)
from remotegpu.tests.polling import poll_until


def _short_lock_timeout(connection: Connection) -> None:
    connection.execute(text("SET LOCAL lock_timeout = '150ms'"))


def test_xact_lock_blocks_another_transaction_until_commit(engine: Engine) -> None:
    key = lock_key(LockNamespace.HOST, uuid.uuid4())
    with engine.connect() as holder, engine.connect() as waiter:
        holder.begin()
        xact_lock(holder, key)

        waiter.begin()
        _short_lock_timeout(waiter)
        with pytest.raises(OperationalError, match="lock timeout"):
            xact_lock(waiter, key)
        waiter.rollback()

        holder.commit()
        waiter.begin()
        _short_lock_timeout(waiter)
        xact_lock(waiter, key)  # released at the holder's commit: no wait now
        waiter.rollback()


def test_try_xact_lock_fails_fast_while_held_and_succeeds_after_rollback(engine: Engine) -> None:
    key = lock_key(LockNamespace.QUOTA_WORKSPACE, uuid.uuid4())
    with engine.connect() as holder, engine.connect() as other:
        holder.begin()
        assert try_xact_lock(holder, key)
        other.begin()
        assert not try_xact_lock(other, key)
        other.rollback()
        holder.rollback()
        other.begin()
        assert try_xact_lock(other, key)
        other.rollback()


def test_session_lock_survives_commit_and_stacks_until_unlocked_as_often(engine: Engine) -> None:
    key = lock_key(LockNamespace.LEADER, 0)
    with engine.connect() as holder, engine.connect() as other:
        assert try_session_lock(holder, key)
        assert try_session_lock(holder, key)  # stacks: now held twice
        holder.commit()
        assert not try_session_lock(other, key)
        assert session_unlock(holder, key)
        assert not try_session_lock(other, key), "one unlock must not release a lock held twice"
        assert session_unlock(holder, key)
        assert try_session_lock(other, key)
        assert session_unlock(other, key)
        assert not session_unlock(holder, key), "unlocking a lock this session does not hold reports False"


def test_session_lock_is_released_when_its_connection_closes(engine: Engine) -> None:
    key = lock_key(LockNamespace.LEADER, 1)
    holder = engine.connect()
    assert try_session_lock(holder, key)
    holder.invalidate()  # really closes the database session instead of returning it to the pool
    holder.close()
    # The server ends the backend (and frees its locks) a moment after the client hangs up: poll.
    with engine.connect() as other:
        poll_until(lambda: try_session_lock(other, key), 10, "the lock to go with its closed connection")
        assert session_unlock(other, key)


def test_xact_lock_all_orders_quota_keys_before_host_keys_and_holds_them_all(engine: Engine) -> None:
    host = lock_key(LockNamespace.HOST, uuid.uuid4())
    user = lock_key(LockNamespace.QUOTA_USER, uuid.uuid4())
    workspace = lock_key(LockNamespace.QUOTA_WORKSPACE, uuid.uuid4())
    with engine.connect() as connection, connection.begin():
        ordered = xact_lock_all(connection, [host, user, workspace, host])
        held = connection.execute(
            text(
                "SELECT (classid::bigint << 32) | objid::bigint FROM pg_locks"
                " WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted"
            )
        ).scalars()
        wanted = {key.value for key in ordered}
    assert ordered == [workspace, user, host]
    assert wanted <= set(held)


@given(
    st.text(min_size=1, max_size=40),
    st.sampled_from(list(LockNamespace)),
    st.sampled_from(list(LockNamespace)),
)
def test_keys_are_signed_64_bit_and_namespaced(
    identifier: str, first: LockNamespace, second: LockNamespace
) -> None:
    a, b = lock_key(first, identifier), lock_key(second, identifier)
    assert -(2**63) <= a.value < 2**63
    assert a.value == lock_key(first, identifier).value
    if first != second:
        assert a.value != b.value
