"""A private, migrated database for one benchmark run, on `DATABASE_URL`'s server or an embedded one."""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.engine import URL, make_url

from remotegpu.ops.migrate import upgrade
from remotegpu.ops.postgres import EmbeddedPostgres, create_fresh_database, drop_database


@contextlib.contextmanager
def bench_database(prefix: str) -> Iterator[URL]:
    """Yield the URL of a fresh migrated database; drop it (and stop an embedded server) afterwards."""
    with contextlib.ExitStack() as stack:
        configured = os.environ.get("DATABASE_URL")
        if configured:
            server_url: URL = make_url(configured)
        else:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="remotegpu-bench-pg-"))
            server_url = stack.enter_context(EmbeddedPostgres(Path(folder) / "data")).url
        url = create_fresh_database(server_url, prefix)
        stack.callback(drop_database, url)
        upgrade(url)
        yield url


def create_tenant(engine: Engine, name: str) -> tuple[uuid.UUID, uuid.UUID]:
    """A user and a workspace of theirs, both called `name`; returns (workspace, user)."""
    with engine.begin() as connection:
        user: uuid.UUID = connection.execute(
            text("INSERT INTO users (email, username, password_hash) VALUES (:e, :u, 'x') RETURNING id"),
            {"e": f"{name}@example.org", "u": name},
        ).scalar_one()
        workspace: uuid.UUID = connection.execute(
            text("INSERT INTO workspaces (name, owner_id) VALUES (:n, :o) RETURNING id"),
            {"n": name, "o": user},
        ).scalar_one()
    return workspace, user
