"""`remotegpu secrets …`: server-side commands of the secrets store (they need its keys and database)."""

from __future__ import annotations

import typer

from remotegpu.core.platform.errors import RemoteGPUError, SettingsError
from remotegpu.ops.cli.consoles import console
from remotegpu.ops.cli.server.config import ConfigOption, server_settings

secrets_app = typer.Typer(help="The secrets store: keys and their rotation.", no_args_is_help=True)


@secrets_app.command("rotate")
def rotate(config: ConfigOption = None) -> None:
    """Re-encrypt every secret of the built-in store with the first key of secrets_key. Put a new key
    first (`secrets_key = NEW,OLD`), run this, then drop the old key."""
    settings = server_settings(config)
    if settings.secrets_backend != "builtin":
        raise RemoteGPUError(
            "secrets rotate re-encrypts the built-in store; with secrets_backend = vault, Vault keeps the"
            " encryption keys (`vault operator rotate`)"
        )
    if not settings.secrets_key:
        raise SettingsError("secrets_key: not set; nothing can have been encrypted without it")
    if not settings.database_url:
        raise SettingsError("database_url is not set: export DATABASE_URL=postgresql://USER@HOST:PORT/DBNAME")
    from remotegpu.core.platform.db import make_engine
    from remotegpu.core.secrets.builtin import SecretKeys, rotate_secrets

    keys = SecretKeys(settings.secrets_key)
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        rotated = rotate_secrets(engine, keys)
    finally:
        engine.dispose()
    console.print(
        f"Re-encrypted {rotated} secret{'' if rotated == 1 else 's'} with the first key of secrets_key;"
        " the keys after it can be removed now.",
        highlight=False,
    )


@secrets_app.command("generate-key")
def generate_key() -> None:
    """Print a new random key for secrets_key."""
    from remotegpu.core.secrets.builtin import generate_secrets_key

    typer.echo(generate_secrets_key())
