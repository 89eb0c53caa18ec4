"""`remotegpu register` and `remotegpu login`: an account, and an API token saved for this machine."""

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


def _password(from_stdin: bool, *, confirm: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    password = getpass.getpass("Password: ")
    if confirm and getpass.getpass("Repeat password: ") != password:
        raise RemoteGPUError("the passwords differ; try again")
    return password
