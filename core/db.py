"""Engine, sessions and the transaction helper.

Postgres runs at READ COMMITTED (its default) and the code assumes it: correctness under concurrency
comes from advisory locks, row locks and constraints, never from a stricter isolation level. Sessions
use `expire_on_commit=False` so rows stay readable after the short transactions the reconciler uses.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import msgspec
from psycopg.types.json import set_json_loads
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from remotegpu.core.errors import SettingsError


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
