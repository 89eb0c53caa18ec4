"""`remotegpu gateways …`: the admin logins RemoteGPU uses at Guacamole and Jumpserver (server-side: they
go into the secrets store, which needs the server's settings)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import Annotated

import typer

from remotegpu.core.platform.errors import RemoteGPUError, SettingsError
from remotegpu.core.platform.settings import Settings
from remotegpu.core.secrets.store import SecretStore
from remotegpu.ops.cli.consoles import console
from remotegpu.ops.cli.server.config import ConfigOption, server_settings

gateways_app = typer.Typer(help="Access gateways: their admin logins.", no_args_is_help=True)


class GatewayProduct(StrEnum):
    """The gateways RemoteGPU creates connections at."""

    GUACAMOLE = "guacamole"
    JUMPSERVER = "jumpserver"


@contextmanager
def _store(settings: Settings) -> Iterator[SecretStore]:
    if not settings.database_url:
        raise SettingsError("database_url is not set: export DATABASE_URL=postgresql://USER@HOST:PORT/DBNAME")
    from remotegpu.core.platform.db import make_engine
    from remotegpu.core.secrets.configured import open_secret_store

    engine = make_engine(settings.database_url, pool_size=1)
    try:
        yield open_secret_store(settings, engine)
    finally:
        engine.dispose()


@gateways_app.command("set-credentials")
def set_credentials(
    gateway: Annotated[GatewayProduct, typer.Argument(help="The gateway whose admin login this is.")],
    username: Annotated[str, typer.Option("--username", help="The service account RemoteGPU signs in as.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Store the admin login RemoteGPU uses at a gateway (in the secrets store; the reconciler reads it at
    its next connection). The password is read from standard input or a prompt, never an argument."""
    from remotegpu.core.gateways.credentials import GatewayLogin, store_gateway_login

    if not username.strip():
        raise RemoteGPUError("--username: empty; give the gateway account RemoteGPU signs in as")
    settings = server_settings(config)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True)
    if not password:
        raise RemoteGPUError("password: empty; give the gateway account's password")
    with _store(settings) as store:
        store_gateway_login(store, gateway.value, GatewayLogin(username, password))
    console.print(f"Stored the {gateway} admin login of {username}.", highlight=False)


@gateways_app.command("check")
def check(
    gateway: Annotated[GatewayProduct, typer.Argument(help="The gateway to sign in to.")],
    config: ConfigOption = None,
) -> None:
    """Sign in to a gateway with the stored login and count RemoteGPU's connections there."""
    from remotegpu.core.environments.states import AccessKind
    from remotegpu.core.gateways.configured import ConfiguredGateways
    from remotegpu.core.gateways.gateway import GatewayUnavailableError

    settings = server_settings(config)
    with _store(settings) as store:
        gateways = ConfiguredGateways(settings, store)
        try:
            connected = gateways.get(AccessKind(gateway.value)).connected_environments()
        except GatewayUnavailableError as error:
            raise RemoteGPUError(str(error)) from None
        finally:
            gateways.close()
    console.print(f"{gateway}: signed in; {len(connected)} RemoteGPU connection(s).", highlight=False)
