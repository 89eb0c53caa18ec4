"""A private, migrated database for one benchmark run, on `DATABASE_URL`'s server or an embedded one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

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
