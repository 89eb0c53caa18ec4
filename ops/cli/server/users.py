"""`remotegpu users`: accounts written straight into the database (the first platform admin), and password
resets an admin issues through the API."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from remotegpu.core.platform.errors import RemoteGPUError
from remotegpu.ops.api_client import ApiClient
from remotegpu.ops.cli.consoles import console
from remotegpu.ops.cli.server.config import ConfigOption, required_database_url, server_settings

users_app = typer.Typer(
    help="Accounts: the first admin straight in the database; password resets through the API.",
    no_args_is_help=True,
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


@users_app.command("reset-password")
def users_reset_password(
    user: Annotated[str, typer.Argument(help="The user's e-mail, username or id.")],
) -> None:
    """Issue a one-time password reset token for a user, through the API (platform admins; signed in).
    Give the token to the user, who runs `remotegpu reset-password --token TOKEN`."""
    from remotegpu.ops.cli.client.session import signed_in_client

    with signed_in_client() as client:
        user_id = _user_id(client, user)
        issued = client.post(f"/users/{user_id}/password-reset")
    console.print(f"Reset token (shown once, valid until {issued['expires_at']}):", highlight=False)
    console.print(issued["reset_token"], highlight=False, soft_wrap=True)


def _user_id(client: ApiClient, reference: str) -> str:
    """The id of the user `reference` names (id, e-mail or username), from the admin user list."""
    wanted = reference.strip().lower()
    cursor = None
    while True:
        page = client.get("/users", limit=200, **({"cursor": cursor} if cursor else {}))
        for found in page["items"]:
            if wanted in {str(found["id"]), found["email"].lower(), found["username"].lower()}:
                return str(found["id"])
        cursor = page.get("next_cursor")
        if not cursor:
            raise RemoteGPUError(f"no user {reference!r}; list them with GET /api/v1/users")
