"""What every server command starts from: its settings (with logging set up) and its database."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec
import typer

from remotegpu.core.platform.errors import RemoteGPUError
from remotegpu.core.platform.settings import Settings, load_settings
from remotegpu.ops.cli.consoles import err_console
from remotegpu.ops.log_format import LogFormat, configure_logging

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML settings file (else $REMOTEGPU_CONFIG).")
]


LogFormatOption = Annotated[
    LogFormat | None,
    typer.Option(
        "--log-format", help="json (one object per line) or console (default: the log_format setting)."
    ),
]


def server_settings(
    config: Path | None, *, log_format: LogFormat | None = None, default_format: LogFormat = "console"
) -> Settings:
    """The settings of `config` (else $REMOTEGPU_CONFIG and the environment), with logs on stderr in
    `log_format`, else the `log_format` setting, else `default_format`."""
    settings = load_settings(config_file=config)
    chosen = log_format or settings.log_format or default_format
    configure_logging(settings.log_level, chosen, err_console)
    return msgspec.structs.replace(settings, log_format=chosen)  # what worker processes log in


def required_database_url(settings: Settings) -> str:
    """The configured database URL, its database created if missing; an error line if none is set."""
    if not settings.database_url:
        raise RemoteGPUError(
            "database_url is not set: export DATABASE_URL=postgresql://USER@HOST:PORT/DBNAME"
        )
    from remotegpu.ops.postgres import ensure_database

    ensure_database(settings.database_url)
    return settings.database_url
