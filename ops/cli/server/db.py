"""`remotegpu db`: migrate the configured database and read its schema revision."""

from __future__ import annotations

from typing import Annotated

import typer

from remotegpu.ops.cli.consoles import console
from remotegpu.ops.cli.server.config import ConfigOption, required_database_url, server_settings

db_app = typer.Typer(help="Database schema: migrate and inspect.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
    config: ConfigOption = None,
) -> None:
    """Migrate the configured database (DATABASE_URL) to the latest schema."""
    from remotegpu.ops import migrate

    url = required_database_url(server_settings(config))
    migrate.upgrade(url, revision)
    console.print(f"Database at revision {migrate.current_revision(url)}.")


@db_app.command("current")
def db_current(config: ConfigOption = None) -> None:
    """Print the schema revision of the configured database."""
    from remotegpu.ops import migrate

    url = required_database_url(server_settings(config))
    console.print(migrate.current_revision(url) or "empty (never migrated)")
