"""Fixtures shared by the allocation and scheduling tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from remotegpu.core.capacity.audit import audit
from remotegpu.tests.allocation_world import make_user, make_workspace


@pytest.fixture
def db(engine: Engine, sessions: object) -> Iterator[Engine]:
    """The engine, with every table emptied after the test (via `sessions`)."""
    yield engine
    with engine.connect() as connection:
        assert audit(connection) == [], "every test must leave the invariants intact"


@pytest.fixture
def tenant(db: Engine) -> tuple[uuid.UUID, uuid.UUID]:
    """A workspace and its owner: (workspace id, user id)."""
    with db.begin() as connection:
        user = make_user(connection)
        return make_workspace(connection, user), user
