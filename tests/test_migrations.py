"""Migrations create exactly the schema the models describe, and round-trip down to nothing and back."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import URL

from remotegpu.core.capacity.queue_places import PLACE_JOIN
from remotegpu.core.models import Base
from remotegpu.core.platform.db import make_engine
from remotegpu.ops.migrate import current_revision, downgrade, head_revision, upgrade
from remotegpu.ops.postgres import create_fresh_database, drop_database


@pytest.fixture
def empty_database(postgres_server_url: URL) -> Iterator[URL]:
    url = create_fresh_database(postgres_server_url, "remotegpu_migrations")
    yield url
    drop_database(url)


def _schema_differences(url: URL) -> list[object]:
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "compare_server_default": True}
            )
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def _tables(url: URL) -> set[str]:
    engine = make_engine(url, pool_size=1)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_head_on_an_empty_database_matches_the_models(empty_database: URL) -> None:
    assert current_revision(empty_database) is None
    upgrade(empty_database)
    assert current_revision(empty_database) == head_revision()
    assert _schema_differences(empty_database) == []
    assert set(Base.metadata.tables) <= _tables(empty_database)


def test_downgrade_base_removes_everything_and_upgrade_again_works(empty_database: URL) -> None:
    upgrade(empty_database)
    downgrade(empty_database, "base")
    assert _tables(empty_database) <= {"alembic_version"}
    assert current_revision(empty_database) is None
    upgrade(empty_database)
    assert _schema_differences(empty_database) == []


def test_upgrade_is_idempotent(empty_database: URL) -> None:
    upgrade(empty_database)
    revision = current_revision(empty_database)
    upgrade(empty_database)
    assert current_revision(empty_database) == revision


def test_queue_places_survive_the_move_to_queue_buckets_and_back(empty_database: URL) -> None:
    upgrade(empty_database, "0017")
    engine = make_engine(empty_database, pool_size=1)
    try:
        with engine.begin() as connection:
            user = connection.execute(
                text(
                    "INSERT INTO users (email, username, password_hash) VALUES ('queue@x.org', 'queue', 'x') RETURNING id"
                )
            ).scalar_one()
            workspace = connection.execute(
                text("INSERT INTO workspaces (name, owner_id) VALUES ('queue', :u) RETURNING id"), {"u": user}
            ).scalar_one()
            waits, held = (
                connection.execute(
                    text(
                        "INSERT INTO environments (workspace_id, user_id, name, spec, phase, queue_position,"
                        " queue_reason) VALUES (:w, :u, :n, '{}', 'admitted', :p, :r) RETURNING id"
                    ),
                    {"w": workspace, "u": user, "n": name, "p": position, "r": reason},
                ).scalar_one()
                for name, position, reason in (
                    ("waits", 2, "waiting for 8×H100"),
                    ("held", None, "budget exhausted"),
                )
            )
        upgrade(empty_database)
        with engine.connect() as connection:
            places = {
                row.id: (row.position, row.reason)
                for row in connection.execute(
                    text(f"SELECT e.id, qp.position, qp.reason FROM environments e {PLACE_JOIN}")
                )
            }
        assert places == {waits: (2, "waiting for 8×H100"), held: (None, "budget exhausted")}
        downgrade(empty_database, "0017")
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT id, queue_position, queue_reason FROM environments"))
            assert {row.id: (row.queue_position, row.queue_reason) for row in rows} == places
    finally:
        engine.dispose()
