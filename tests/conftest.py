"""Test-wide fixtures: one real Postgres per run, one fresh migrated database, rows cleaned between tests.

With `DATABASE_URL` set (CI uses the machine's Postgres on 127.0.0.1:5432), the run creates a database of
its own on that server and drops it at the end. Without it, the run starts an embedded Postgres
(`pgserver`) in a temporary folder and stops it at the end.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from remotegpu.core.models import Base
from remotegpu.core.platform.db import make_engine, make_session_factory, normalise_url
from remotegpu.ops.migrate import upgrade
from remotegpu.ops.postgres import EmbeddedPostgres, create_fresh_database, drop_database


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[URL]:
    """URL of a Postgres server for this run: `DATABASE_URL`'s, or an embedded one."""
    configured = os.environ.get("DATABASE_URL")
    if configured:
        yield normalise_url(make_url(configured))
        return
    with tempfile.TemporaryDirectory(prefix="remotegpu-test-pg-") as folder:
        server = EmbeddedPostgres(Path(folder) / "data")
        server.start()
        try:
            yield server.url
        finally:
            server.stop()


@pytest.fixture(scope="session")
def database_url(postgres_server_url: URL) -> Iterator[URL]:
    """A fresh database, migrated to head, private to this test run."""
    url = create_fresh_database(postgres_server_url, "remotegpu_test")
    try:
        upgrade(url)
        yield url
    finally:
        drop_database(url)


@pytest.fixture(scope="session")
def engine(database_url: URL) -> Iterator[Engine]:
    """The run's engine on the migrated test database."""
    engine = make_engine(database_url, pool_size=5, application_name="remotegpu-tests")
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> Iterator[sessionmaker[Session]]:
    """A session factory on the test database; every table is emptied after the test."""
    yield make_session_factory(engine)
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
