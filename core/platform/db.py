"""Engine, sessions and the transaction helper.

Postgres runs at READ COMMITTED (its default) and the code assumes it: correctness under concurrency
comes from advisory locks, row locks and constraints, never from a stricter isolation level. Sessions
use `expire_on_commit=False` so rows stay readable after the short transactions the reconciler uses.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterator, Mapping
from typing import Any

import msgspec
from psycopg import AsyncConnection
from psycopg.rows import namedtuple_row
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Engine, TextClause, create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from remotegpu.core.platform.errors import SettingsError


def normalise_url(url: str | URL) -> URL:
    """Return `url` with the psycopg 3 driver, accepting plain `postgresql://` and `postgres://` URLs."""
    parsed = make_url(url) if isinstance(url, str) else url
    if parsed.get_backend_name() not in {"postgresql", "postgres"}:
        raise SettingsError(
            f"database_url: {parsed.get_backend_name()!r} is not Postgres; use postgresql://…"
        )
    return parsed.set(drivername="postgresql+psycopg")


def make_engine(
    url: str | URL,
    *,
    pool_size: int = 10,
    application_name: str = "remotegpu",
    pre_ping: bool = True,
    autocommit: bool = False,
) -> Engine:
    """Create an engine for `url` with the psycopg 3 driver.

    With `pre_ping` the pool checks each connection before handing it out (one round trip); a hot path
    such as the API turns it off and relies on SQLAlchemy invalidating the pool on a disconnect error,
    plus `pool_recycle`. An `autocommit` engine is for reads only: no BEGIN/COMMIT round trips, and its
    connections are put in that mode once, when opened, not at every checkout.
    """
    # jsonb columns decode with msgspec (several times faster than the standard library's json).
    set_json_loads(msgspec.json.decode)
    return create_engine(
        normalise_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=pre_ping,
        pool_recycle=300,
        hide_parameters=True,  # statement parameters may hold secrets: never in exceptions or logs
        connect_args={"application_name": application_name},
        **({"isolation_level": "AUTOCOMMIT"} if autocommit else {}),
    )


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Return the session factory every component uses (`expire_on_commit=False`)."""
    return sessionmaker(engine, expire_on_commit=False)


@contextlib.contextmanager
def transaction(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """Run the block in one transaction: commit when it returns, roll back when it raises."""
    with sessions.begin() as session:
        yield session


# -- the asynchronous read path ---------------------------------------------------------------------
# The API's hottest reads run on the event loop straight on psycopg: no thread hop, no SQLAlchemy
# result layer (together about 1.7 times the requests per second on the development machine). They
# execute the very `text()` statements the synchronous functions use, and rows keep attribute access.

_BIND = re.compile(r"(?<![:\w]):(\w+)")


@functools.lru_cache(maxsize=256)
def _psycopg_query(sql: str) -> str:
    return _BIND.sub(r"%(\1)s", sql.replace("%", "%%"))


def make_async_pool(
    url: URL, *, size: int, application_name: str = "remotegpu-api-async"
) -> AsyncConnectionPool[Any]:
    """An autocommit psycopg pool for reads on the event loop; open it (`await pool.open(wait=True)`)
    in the running loop.

    Half of it is connected when opened and kept open, so the first requests after a start do not each
    wait for a connection to be set up.
    """
    set_json_loads(msgspec.json.decode)
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    return AsyncConnectionPool(
        conninfo,
        min_size=max(1, size // 2),
        max_size=size,
        open=False,
        kwargs={"autocommit": True, "row_factory": namedtuple_row, "application_name": application_name},
    )


async def fetch_all(
    connection: AsyncConnection[Any], statement: TextClause, params: Mapping[str, Any]
) -> list[Any]:
    """Every row of `statement` (a SQLAlchemy `text()` with `:name` parameters)."""
    cursor = await connection.execute(_psycopg_query(statement.text), params)
    return await cursor.fetchall()


async def fetch_one(
    connection: AsyncConnection[Any], statement: TextClause, params: Mapping[str, Any]
) -> Any | None:
    """The only row of `statement`, or None."""
    cursor = await connection.execute(_psycopg_query(statement.text), params)
    return await cursor.fetchone()
