"""What every server command starts from: its settings (with logging set up) and its database."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from remotegpu.core.platform.errors import RemoteGPUError
from remotegpu.core.platform.settings import Settings, load_settings
from remotegpu.ops.cli.consoles import err_console
from remotegpu.ops.log_format import console_handler

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML settings file (else $REMOTEGPU_CONFIG).")
]


def server_settings(config: Path | None) -> Settings:
    """The settings of `config` (else $REMOTEGPU_CONFIG and the environment), with logs on stderr."""
    settings = load_settings(config_file=config)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(message)s",
        handlers=[console_handler(err_console)],
    )
    # Third-party chatter (pgserver's command lines, Alembic's context lines, httpx's request lines) only at
    # debug level.
    for noisy in ("pgserver", "alembic", "apscheduler", "transitions", "urllib3", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if settings.log_level == "debug" else logging.WARNING)
    return settings


def required_database_url(settings: Settings) -> str:
    """The configured database URL, its database created if missing; an error line if none is set."""
    if not settings.database_url:
        raise RemoteGPUError(
            "database_url is not set: export DATABASE_URL=postgresql://USER@HOST:PORT/DBNAME"
        )
    from remotegpu.ops.postgres import ensure_database

    ensure_database(settings.database_url)
    return settings.database_url
