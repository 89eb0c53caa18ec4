"""`remotegpu users`: accounts written straight into the database, for the first platform admin."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from remotegpu.ops.cli.consoles import console
from remotegpu.ops.cli.server.config import ConfigOption, required_database_url, server_settings

users_app = typer.Typer(
    help="Accounts, straight in the database (bootstrap the first admin).", no_args_is_help=True
)


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Argument(help="E-mail address.")],
    username: Annotated[str, typer.Argument(help="User name.")],
    admin: Annotated[bool, typer.Option("--admin", help="Make a platform administrator.")] = False,
    config: ConfigOption = None,
) -> None:
    """Create an account with a password read from stdin (the way to make the first platform admin)."""
    settings = server_settings(config)
    url = required_database_url(settings)
    from remotegpu.core.accounts.users import register_user
    from remotegpu.core.environments.states import UserRole
    from remotegpu.core.platform.db import make_engine

    password = sys.stdin.readline().rstrip("\n")
    engine = make_engine(url, pool_size=1)
    try:
        with engine.begin() as connection:
            role = UserRole.ADMIN if admin else UserRole.USER
            user = register_user(connection, email=email, username=username, password=password, role=role)
    finally:
        engine.dispose()
    console.print(f"created {user.role.value} {user.username} <{user.email}>", highlight=False)
