"""Leader election and fencing against real Postgres, including the known pitfalls of advisory locks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError

from remotegpu.core.platform.errors import SettingsError
from remotegpu.core.platform.locks import LockNamespace, lock_key, session_unlock, try_session_lock
from remotegpu.reconciler.leader import FencedOutError, LeaderElector, check_direct_connection, fence


@pytest.fixture
def electors(database_url: URL, sessions: object) -> Iterator[list[LeaderElector]]:
    made = [LeaderElector(database_url, identity=f"r{i}") for i in range(3)]
    yield made
    for elector in made:
        elector.close()


def test_exactly_one_of_three_leads_and_each_takeover_raises_the_epoch(
    electors: list[LeaderElector], engine: Engine
) -> None:
    results = [elector.campaign() for elector in electors]
    assert results.count(True) == 1
    leader = electors[results.index(True)]
    assert leader.epoch == 1
    assert [e.campaign() for e in electors if e is not leader] == [False, False]
    leader.resign()
    successor = next(e for e in electors if e is not leader)
    assert successor.campaign()
    assert successor.epoch == 2
    with engine.connect() as connection:
        row = connection.execute(text("SELECT epoch, leader_id FROM shard_leaders WHERE shard = 0")).one()
    assert tuple(row) == (2, successor.identity)


def test_terminated_backend_is_noticed_at_the_next_heartbeat_and_the_old_epoch_is_fenced(
    electors: list[LeaderElector], engine: Engine
) -> None:
    old, new = electors[0], electors[1]
    assert old.campaign()
    stale_epoch = old.epoch
    assert stale_epoch is not None
    with engine.connect() as admin:
        terminated = admin.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE pid = :pid AND datname = current_database()"
            ),
            {"pid": old.backend_pid()},
        ).scalar_one()
    assert terminated
    assert not old.heartbeat(), "a dead lock connection must end leadership at once"
    assert not old.is_leader
    assert new.campaign()
    with pytest.raises(FencedOutError), engine.begin() as connection:
        fence(connection, 0, stale_epoch)
    with engine.begin() as connection:
        fence(connection, 0, new.epoch or 0)


def test_a_leader_that_campaigns_on_every_heartbeat_does_not_stack_its_lock(
    electors: list[LeaderElector], engine: Engine
) -> None:
    leader, other = electors[0], electors[1]
    for _ in range(5):
        assert leader.campaign()
    leader.resign()  # one unlock must be enough
    assert other.campaign()


def test_re_taking_a_session_lock_naively_stacks_it(engine: Engine) -> None:
    """The pitfall the elector avoids: two grants need two unlocks."""
    key = lock_key(LockNamespace.LEADER, 99)
    with engine.connect() as naive, engine.connect() as other:
        assert try_session_lock(naive, key)
        assert try_session_lock(naive, key)
        session_unlock(naive, key)
        assert not try_session_lock(other, key)
        session_unlock(naive, key)


_SLOW_LOCK = text("SELECT pg_try_advisory_lock(:key), pg_sleep(2)")


def test_a_timeout_during_the_lock_call_does_not_leak_the_lock(database_url: URL, sessions: object) -> None:
    slow = LeaderElector(database_url, identity="slow", acquire_timeout_s=0.3)
    slow.lock_sql = _SLOW_LOCK  # the server grants the lock, then the statement times out
    healthy = LeaderElector(database_url, identity="healthy")
    try:
        assert not slow.campaign()
        assert healthy.campaign(), "the timed-out session's lock must not outlive it"
    finally:
        slow.close()
        healthy.close()


def test_keeping_the_connection_after_such_a_timeout_would_leak_it(engine: Engine) -> None:
    """Why the elector drops its connection: session locks survive the statement's error."""
    key = lock_key(LockNamespace.LEADER, 98)
    with engine.connect() as careless, engine.connect() as other:
        careless.execute(text("SET statement_timeout = 300"))
        with pytest.raises(OperationalError, match="statement timeout"):
            careless.execute(_SLOW_LOCK, {"key": key.value})
        careless.rollback()
        assert not try_session_lock(other, key)
        careless.invalidate()
    with engine.connect() as later:
        assert try_session_lock(later, key)
        session_unlock(later, key)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app@db.example.org:6432/rgpu",
        "postgresql://app@pgbouncer.internal:5432/rgpu",
        "postgresql://app@aws-0-eu.pooler.supabase.com:5432/rgpu",
        "postgresql://app@db.example.org:5432/rgpu?pgbouncer=true",
    ],
)
def test_a_connection_pooler_url_is_refused(url: str) -> None:
    with pytest.raises(SettingsError, match="direct Postgres connection"):
        check_direct_connection(url)


def test_a_direct_url_is_accepted() -> None:
    check_direct_connection("postgresql://app@db.example.org:5432/rgpu")
