"""A reconciler whose deployment publishes SSH through a gateway's contract fake, and product-neutral
looks at what the fake holds (so one test covers Guacamole and Jumpserver)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from remotegpu.core.gateways.credentials import GatewayLogin, store_gateway_login
from remotegpu.core.gateways.gateway import connection_name
from remotegpu.core.platform.settings import Settings
from remotegpu.ops.fakes.guacamole import FakeGuacamole
from remotegpu.ops.fakes.jumpserver import FakeJumpserver
from remotegpu.tests.reconciler.world import World, build_world
from remotegpu.tests.secrets_world import builtin_store

ADMIN = GatewayLogin("remotegpu", "gateway-admin-password-1")


@dataclass
class GatewayView:
    """What a test reads from a gateway fake, whichever product it is."""

    kind: str
    fake: Any
    connections: Callable[[], list[str]]
    """Names of the connections (assets) the fake holds."""
    target_of: Callable[[uuid.UUID], tuple[str, int, str, str]]
    """An environment's connection as (host, port, username, private key)."""
    entitled: Callable[[uuid.UUID], set[str]]
    """Usernames that may open an environment's connection."""

    def count(self, environment: uuid.UUID) -> int:
        return self.connections().count(connection_name(environment))


def _guacamole() -> contextlib.AbstractContextManager[GatewayView]:
    @contextlib.contextmanager
    def started() -> Iterator[GatewayView]:
        with FakeGuacamole(admin_username=ADMIN.username, admin_password=ADMIN.password) as fake:

            def connection(environment: uuid.UUID) -> Any:
                found = fake.connection_named(connection_name(environment))
                assert found is not None, "no connection at the fake"
                return found

            def target_of(environment: uuid.UUID) -> tuple[str, int, str, str]:
                p = connection(environment).parameters
                return p["hostname"], int(p["port"]), p["username"], p["private-key"]

            def entitled(environment: uuid.UUID) -> set[str]:
                return set(fake.readers_of(connection(environment).identifier)) - {ADMIN.username}

            yield GatewayView(
                "guacamole",
                fake,
                lambda: [c.name for c in list(fake.connections.values())],
                target_of,
                entitled,
            )
            assert fake.unexpected == [], "the client made calls the fake does not implement"

    return started()


def _jumpserver() -> contextlib.AbstractContextManager[GatewayView]:
    @contextlib.contextmanager
    def started() -> Iterator[GatewayView]:
        with FakeJumpserver(admin_username=ADMIN.username, admin_password=ADMIN.password) as fake:

            def host(environment: uuid.UUID) -> Any:
                found = [h for h in fake.hosts() if h.name == connection_name(environment)]
                assert len(found) == 1, "not exactly one asset at the fake"
                return found[0]

            def target_of(environment: uuid.UUID) -> tuple[str, int, str, str]:
                asset = host(environment)
                [account] = [a for a in fake.accounts() if a.asset_id == asset.id]
                assert account.secret_type == "ssh_key"
                return asset.address, asset.port("ssh"), account.username, account.secret

            def entitled(environment: uuid.UUID) -> set[str]:
                asset = host(environment)
                [permission] = [p for p in fake.permissions() if asset.id in p.asset_ids]
                assert permission.name == connection_name(environment)
                return {fake.username_of(user) for user in permission.user_ids}

            yield GatewayView("jumpserver", fake, lambda: [h.name for h in fake.hosts()], target_of, entitled)
            assert fake.unexpected == [], "the client made calls the fake does not implement"

    return started()


GATEWAYS: dict[str, Callable[[], contextlib.AbstractContextManager[GatewayView]]] = {
    "guacamole": _guacamole,
    "jumpserver": _jumpserver,
}


def gateway_world(
    engine: Engine,
    url: URL,
    view: GatewayView,
    *,
    kill_point: Callable[[str], None] | None = None,
    workspace_gateways: bool = False,
) -> World:
    """A world whose deployment uses `view`'s gateway, its admin login stored (`workspace_gateways`:
    workspaces may choose another, or direct access)."""
    settings = msgspec.convert(
        {"gateway": view.kind, f"{view.kind}_url": view.fake.url, "workspace_gateways": workspace_gateways},
        Settings,
    )
    store = builtin_store(engine)
    store_gateway_login(store, view.kind, ADMIN)
    return build_world(engine, url, settings=settings, secrets=store, kill_point=kill_point)


def live_endpoints(engine: Engine, environment: uuid.UUID) -> list[tuple[str, str]]:
    """(kind, url) of the environment's endpoints not removed."""
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT kind, url FROM access_endpoints WHERE environment_id = :id AND removed_at IS NULL"),
            {"id": environment},
        ).all()
    return [(row.kind, row.url) for row in rows]
