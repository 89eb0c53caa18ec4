"""Run the Alembic migrations shipped in `remotegpu.migrations` against a database URL."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import URL

import remotegpu.migrations
from remotegpu.core.platform.db import normalise_url

MIGRATIONS_DIR = Path(remotegpu.migrations.__file__).parent


def alembic_config(url: str | URL) -> Config:
    """An Alembic config for `url` that needs no alembic.ini on disk."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    rendered = normalise_url(url).render_as_string(hide_password=False)
    # ConfigParser interpolates '%': a password such as 'p%40ss' must survive it.
    config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return config


def upgrade(url: str | URL, revision: str = "head") -> None:
    """Migrate the database at `url` up to `revision`."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str | URL, revision: str = "base") -> None:
    """Migrate the database at `url` down to `revision`."""
    command.downgrade(alembic_config(url), revision)


def head_revision() -> str:
    """The newest revision shipped in `remotegpu.migrations`: what `upgrade` migrates to."""
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None, "the migrations have one head"
    return head


def current_revision(url: str | URL) -> str | None:
    """The revision the database at `url` is at, or None when it has never been migrated."""
    from alembic.runtime.migration import MigrationContext

    from remotegpu.core.platform.db import make_engine

    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
