"""The embedded Postgres path is always exercised, even where DATABASE_URL points at a server."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from remotegpu.core.platform.db import make_engine
from remotegpu.ops.migrate import current_revision, head_revision, upgrade
from remotegpu.ops.postgres import EmbeddedPostgres, ensure_database, server_answers


def test_embedded_postgres_starts_migrates_and_stops(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "pg")
    with server:
        url = ensure_database(server.url.set(database="remotegpu"))
        assert url.password is None
        upgrade(url)
        assert current_revision(url) == head_revision()
        engine = make_engine(url, pool_size=1)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM environments")).scalar_one() == 0
        engine.dispose()
        assert (tmp_path / "pg" / "PG_VERSION").exists()
        assert server_answers(url)
    assert not server_answers(url), "the server must be stopped on exit"
    assert not (tmp_path / "pg" / "postmaster.pid").exists()


def test_embedded_postgres_keeps_its_data_across_restarts(tmp_path: Path) -> None:
    with EmbeddedPostgres(tmp_path / "pg") as server:
        url = ensure_database(server.url.set(database="keep"))
        engine = make_engine(url, pool_size=1)
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE kept (value int)"))
            connection.execute(text("INSERT INTO kept VALUES (42)"))
        engine.dispose()
    with EmbeddedPostgres(tmp_path / "pg") as server:
        engine = make_engine(server.url.set(database="keep"), pool_size=1)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT value FROM kept")).scalar_one() == 42
        engine.dispose()
