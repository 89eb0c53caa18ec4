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


@db_app.command("wait")
def db_wait(
    timeout: Annotated[float, typer.Option(help="Seconds to wait before giving up (exit 1).")] = 300.0,
    config: ConfigOption = None,
) -> None:
    """Wait until the database is at the revision this release ships (what a pod's init container runs,
    so the API and reconciler never start on a schema the migrations Job has not reached yet)."""
    import time

    from remotegpu.ops import migrate

    url = required_database_url(server_settings(config))
    head = migrate.head_revision()
    deadline = time.monotonic() + timeout
    current: str | None = None
    while True:
        try:
            current = migrate.current_revision(url)
        except Exception as error:  # not reachable yet: the database may be starting too
            current = f"unreachable ({error.__class__.__name__})"
        if current == head:
            console.print(f"Database at revision {head}.")
            return
        if time.monotonic() >= deadline:
            raise SystemExit(
                f"error: the database is at {current or 'no revision'}, not {head}, after {timeout:g} s;"
                " run `remotegpu db upgrade` (the migrations Job) first"
            )
        time.sleep(1.0)
