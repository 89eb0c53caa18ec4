"""Alembic environment: runs migrations online against the URL in the Alembic config.

Migrations run in one transaction each and take an advisory lock so that two processes starting at
once (two API replicas, say) never migrate the same database concurrently.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from remotegpu.core.models import Base
from remotegpu.core.platform.db import make_engine

MIGRATION_LOCK_KEY = 0x52475055_4D494752  # "RGPU" "MIGR": fixed, outside every hashed namespace's use

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    """Migrate the database named by the config's `sqlalchemy.url`."""
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("sqlalchemy.url is not set in the Alembic config")
    engine = make_engine(url, pool_size=1, application_name="remotegpu-migrate")
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            connection.commit()
            try:
                context.configure(
                    connection=connection,
                    target_metadata=target_metadata,
                    compare_type=True,
                    compare_server_default=True,
                    transaction_per_migration=True,
                )
                with context.begin_transaction():
                    context.run_migrations()
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
                connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported; run `remotegpu db upgrade`")
run_migrations_online()
