"""The access gateway of `remotegpu dev --gateway guacamole|jumpserver`: the product's contract fake, unless
its address is set, with RemoteGPU's admin login stored in the secrets store, so a newcomer sees a
connection appear at the gateway when an environment with SSH runs and disappear when it stops."""

from __future__ import annotations

import contextlib
import secrets

import msgspec
from sqlalchemy.engine import URL

from remotegpu.core.gateways.credentials import GatewayLogin, read_gateway_login, store_gateway_login
from remotegpu.core.platform.db import make_engine
from remotegpu.core.platform.settings import GatewayChoice, Settings
from remotegpu.core.secrets.configured import open_secret_store
from remotegpu.ops.fakes.guacamole import FakeGuacamole
from remotegpu.ops.fakes.jumpserver import FakeJumpserver

DEV_GATEWAY_USER = "remotegpu"


def _start_fake(choice: GatewayChoice, login: GatewayLogin, stack: contextlib.ExitStack) -> str:
    """Start the fake of `choice` on a free port; its address."""
    if choice == "guacamole":
        guacamole = FakeGuacamole(
            base_path="/guacamole", admin_username=login.username, admin_password=login.password
        )
        return stack.enter_context(guacamole).url
    jumpserver = FakeJumpserver(admin_username=login.username, admin_password=login.password)
    return stack.enter_context(jumpserver).url


def prepare_dev_gateway(
    settings: Settings, choice: GatewayChoice, database_url: URL, stack: contextlib.ExitStack
) -> tuple[Settings, str]:
    """The settings using gateway `choice`, and a line saying where it is. A fake it starts is stopped by
    `stack`; its admin login (random per start) goes into the secrets store `settings` configure."""
    if choice == "direct":
        return settings, "direct (SSH and Jupyter on the hosts' ports)"
    engine = make_engine(database_url, pool_size=1)
    try:
        store = open_secret_store(settings, engine)
        url = getattr(settings, f"{choice}_url")
        if url is not None:
            stored = read_gateway_login(store, choice)
            hint = (
                ""
                if stored
                else f"; store its login: remotegpu gateways set-credentials {choice} --username USER"
            )
            return msgspec.structs.replace(settings, gateway=choice), f"{choice} at {url}{hint}"
        login = GatewayLogin(DEV_GATEWAY_USER, secrets.token_urlsafe(18))
        fake_url = _start_fake(choice, login, stack)
        store_gateway_login(store, choice, login)
    finally:
        engine.dispose()
    settings = msgspec.structs.replace(settings, gateway=choice, **{f"{choice}_url": fake_url})
    return (
        settings,
        f"{choice} (the contract fake) at {fake_url}/  (open it to watch connections come and go)",
    )
