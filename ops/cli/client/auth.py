"""`remotegpu register`, `login`, `passwd` and `reset-password`: an account, an API token saved for this
machine, and the account's password."""

from __future__ import annotations

import contextlib
import getpass
import socket
import sys
from typing import Annotated

import typer

from remotegpu.core.platform.errors import RemoteGPUError
from remotegpu.core.platform.settings import load_settings
from remotegpu.ops.api_client import ApiClient, ClientProfile, load_profile, save_profile, server_url
from remotegpu.ops.cli.client.session import signed_in_client
from remotegpu.ops.cli.consoles import console


def register(
    email: Annotated[str, typer.Option(prompt=True, help="E-mail address.")],
    username: Annotated[str, typer.Option(prompt=True, help="User name.")],
    server: Annotated[
        str | None, typer.Option(help="API URL (default: the saved or configured one).")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
) -> None:
    """Create an account on the API (then `remotegpu login`); the server is remembered for `login`."""
    password = _password(password_stdin, confirm=True)
    settings = load_settings()
    profile = load_profile()
    client = ApiClient(server or server_url(settings, profile), None)  # signing in sends no token
    with contextlib.closing(client):
        user = client.post("/auth/register", {"email": email, "username": username, "password": password})
    if profile.server != client.server:  # a token (and workspace) of another server must not follow it
        save_profile(ClientProfile(client.server))
    next_step = f"remotegpu login --email {user['email']}"
    if server_url(settings, load_profile()).rstrip("/") != client.server:  # a configured URL wins
        next_step += f" --server {client.server}"
    console.print(f"Registered {user['username']} <{user['email']}>. Next: {next_step}", highlight=False)


def login(
    email: Annotated[str, typer.Option(prompt=True, help="E-mail address.")],
    server: Annotated[str | None, typer.Option(help="API URL, e.g. http://127.0.0.1:8080.")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
) -> None:
    """Sign in and save an API token for this machine (in your config folder, readable by you only)."""
    password = _password(password_stdin, confirm=False)
    settings = load_settings()
    profile = load_profile()
    client = ApiClient(server or server_url(settings, profile), None)  # signing in sends no token
    with contextlib.closing(client):
        access = client.post("/auth/login", {"email": email, "password": password})["access_token"]
    with contextlib.closing(ApiClient(client.server, access)) as signed_in:
        minted = signed_in.post("/auth/tokens", {"name": f"cli@{socket.gethostname()}"[:64]})
    path = save_profile(ClientProfile(client.server, minted["token"], profile.workspace))
    console.print(f"Signed in to {client.server} as {email}; token saved in {path}")


def _password(from_stdin: bool, *, confirm: bool, prompt: str = "Password: ") -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    password = getpass.getpass(prompt)
    if confirm and getpass.getpass("Repeat password: ") != password:
        raise RemoteGPUError("the passwords differ; try again")
    return password


def passwd(
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin", help="Read the current and the new password from stdin, a line each."
        ),
    ] = False,
) -> None:
    """Change your password. Your other sessions and API tokens stop working; this machine's stays."""
    if password_stdin:
        old, new = sys.stdin.readline().rstrip("\n"), sys.stdin.readline().rstrip("\n")
    else:
        old = getpass.getpass("Current password: ")
        new = _password(False, confirm=True, prompt="New password: ")
    with signed_in_client() as client:
        client.put("/users/me/password", {"old_password": old, "new_password": new})
    console.print("Password changed; every other session and API token of yours was signed out.")


def reset_password(
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="REMOTEGPU_RESET_TOKEN",
            help="The reset token a platform admin gave you (else asked for, unechoed: a command line is"
            " visible to every user of the machine).",
        ),
    ] = None,
    server: Annotated[
        str | None, typer.Option(help="API URL (default: the saved or configured one).")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the new password from stdin.")
    ] = False,
) -> None:
    """Set a new password with a one-time reset token from a platform admin (then `remotegpu login`)."""
    if token is None:
        if password_stdin:
            raise RemoteGPUError(
                "--token: needed with --password-stdin (or set REMOTEGPU_RESET_TOKEN); without"
                " --password-stdin it is asked for"
            )
        token = typer.prompt("Reset token", hide_input=True)
    new = _password(password_stdin, confirm=True, prompt="New password: ")
    client = ApiClient(server or server_url(load_settings(), load_profile()), None)
    with contextlib.closing(client):
        client.post("/auth/reset", {"reset_token": token, "new_password": new})
    console.print("Password set. Next: remotegpu login")
