"""The principal cache's own rules: off unless listening, no stale puts, TTL and token expiry."""

from __future__ import annotations

import datetime as dt
import uuid

from remotegpu.core.accounts.credential_cache import PrincipalCache
from remotegpu.core.accounts.users import Principal
from remotegpu.core.environments.states import UserRole
from remotegpu.core.platform import clock

ALICE = Principal(uuid.uuid4(), "alice", "alice@example.org", UserRole.USER)


def test_nothing_is_cached_while_not_listening() -> None:
    cache = PrincipalCache()
    cache.put("k", ALICE, cache.generation, None)
    assert cache.get("k") is None
    cache.set_listening(True)
    cache.put("k", ALICE, cache.generation, None)
    assert cache.get("k") == ALICE
    cache.set_listening(False)
    assert cache.get("k") is None


def test_a_lookup_older_than_a_clear_is_not_stored() -> None:
    cache = PrincipalCache()
    cache.set_listening(True)
    before = cache.generation
    cache.clear()  # a credential changed while the lookup ran
    cache.put("k", ALICE, before, None)
    assert cache.get("k") is None


def test_entries_expire_with_the_ttl_and_with_the_token() -> None:
    cache = PrincipalCache(ttl_seconds=0)
    cache.set_listening(True)
    cache.put("k", ALICE, cache.generation, None)
    assert cache.get("k") is None
    cache = PrincipalCache()
    cache.set_listening(True)
    now = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
    with clock.frozen_at(now):
        cache.put("k", ALICE, cache.generation, now + dt.timedelta(seconds=5))
        assert cache.get("k") == ALICE
    with clock.frozen_at(now + dt.timedelta(seconds=5)):
        assert cache.get("k") is None
