"""Finding a Postgres to use: the configured one, or an embedded one; and creating private databases in it.

When no `DATABASE_URL` is set, RemoteGPU starts a private Postgres server with the `pgserver` package
(server binaries shipped as a wheel) in a data folder of its own, listening only on a Unix socket.
"""

from __future__ import annotations

import contextlib
import secrets
import warnings
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError

from remotegpu.core.platform.db import normalise_url
from remotegpu.core.platform.errors import DatabaseUnavailableError


class EmbeddedPostgres:
    """A private Postgres server in `data_dir`, started on `start()` and stopped on `stop()`."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self._server: object | None = None
        self._uri: str | None = None

    def start(self) -> URL:
        """Start (or reuse) the server and return the URL of its `postgres` database."""
        with warnings.catch_warnings():
            # pgserver asks platformdirs for a runtime dir at import; without XDG_RUNTIME_DIR it warns.
            warnings.simplefilter("ignore")
            from pgserver.postgres_server import get_server

        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            server = get_server(self.data_dir, cleanup_mode="stop")
        except Exception as error:
            log = self.data_dir / "log"
            raise DatabaseUnavailableError(
                f"embedded Postgres did not start in {self.data_dir} ({error}); see {log}"
            ) from None
        self._server = server
        self._uri = server.get_uri()
        return self.url

    @property
    def url(self) -> URL:
        """URL of the running server's `postgres` database."""
        if self._uri is None:
            raise DatabaseUnavailableError("embedded Postgres is not running")
        url = normalise_url(self._uri)
        # pgserver's URI carries an empty password ("postgres:@"); drop it so nothing prints "***".
        if url.password:
            return url
        return URL.create(url.drivername, url.username, None, url.host, url.port, url.database, url.query)

    def stop(self) -> None:
        """Stop the server if this process started it; idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.cleanup()  # type: ignore[attr-defined]
        self._uri = None

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def database_url_for(server_url: URL, database: str) -> URL:
    """The URL of `database` on the server of `server_url`."""
    return server_url.set(database=database)


def ensure_database(url: URL | str) -> URL:
    """Create the database `url` names unless it exists; return the normalised URL."""
    target = normalise_url(url)
    name = target.database
    if not name:
        raise DatabaseUnavailableError("database_url names no database; add /DBNAME to it")
    with _admin_connection(target) as connection:
        exists = connection.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
        if not exists:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    return target


def create_fresh_database(server_url: URL | str, prefix: str) -> URL:
    """Create a new, empty database with a random name starting with `prefix`; return its URL."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    target = database_url_for(normalise_url(server_url), name)
    with _admin_connection(target) as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    return target


def drop_database(url: URL | str) -> None:
    """Drop the database `url` names, closing other sessions on it; a missing database is fine."""
    target = normalise_url(url)
    with _admin_connection(target) as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)'))


@contextlib.contextmanager
def _admin_connection(target: URL) -> Iterator[Connection]:
    """An autocommit connection to the server's `postgres` database, for CREATE/DROP DATABASE."""
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        try:
            connection = admin.connect()
        except OperationalError as error:
            where = target.render_as_string(hide_password=True)
            raise DatabaseUnavailableError(f"cannot reach Postgres at {where}: {error.orig}") from None
        with connection:
            yield connection
    finally:
        admin.dispose()


def server_answers(url: URL | str, timeout_s: float = 2.0) -> bool:
    """True when a Postgres server accepts a connection at `url` within `timeout_s`."""
    target = normalise_url(make_url(url) if isinstance(url, str) else url)
    engine = create_engine(target, connect_args={"connect_timeout": max(1, int(timeout_s))})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except Exception:
        return False
    finally:
        engine.dispose()
