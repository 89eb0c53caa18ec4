"""Which gateway an environment uses: the deployment's setting, a workspace's choice where allowed, and
the admin logins in the secrets store (never shown)."""

from __future__ import annotations

import uuid

import msgspec
import pytest
from sqlalchemy import Engine

from remotegpu.core.accounts.membership import create_workspace, workspace_access
from remotegpu.core.accounts.users import Principal
from remotegpu.core.accounts.workspace_settings import (
    WorkspaceSettings,
    WorkspaceSettingsUpdate,
    settings_of,
    update_workspace_settings,
)
from remotegpu.core.environments.states import AccessKind, UserRole
from remotegpu.core.gateways.configured import ConfiguredGateways
from remotegpu.core.gateways.credentials import GatewayLogin, read_gateway_login, store_gateway_login
from remotegpu.core.gateways.gateway import GatewayUnavailableError, connection_name, environment_of
from remotegpu.core.gateways.targets import chosen_gateway
from remotegpu.core.platform.errors import InvalidInputError, SettingsError
from remotegpu.core.platform.settings import Settings, load_settings
from remotegpu.core.secrets.memory import InMemorySecretStore
from remotegpu.tests.allocation_world import make_user
from remotegpu.tests.secrets_world import builtin_store


def test_a_gateway_needs_its_address() -> None:
    with pytest.raises(SettingsError, match="gateway: guacamole needs guacamole_url"):
        load_settings({"REMOTEGPU_GATEWAY": "guacamole"})
    with pytest.raises(SettingsError, match=r"jumpserver_url: 'jump\.example\.org' is not an http"):
        load_settings({"REMOTEGPU_JUMPSERVER_URL": "jump.example.org"})
    with pytest.raises(SettingsError, match="REMOTEGPU_GATEWAY"):
        load_settings({"REMOTEGPU_GATEWAY": "ssh-bastion"})
    settings = load_settings(
        {"REMOTEGPU_GATEWAY": "jumpserver", "REMOTEGPU_JUMPSERVER_URL": "https://jump.example.org"}
    )
    assert settings.configured_gateways() == ("direct", "jumpserver")


def test_a_workspace_chooses_only_where_the_deployment_lets_it() -> None:
    guacamole, jumpserver = "https://g.example.org", "https://j.example.org"
    fixed = Settings(gateway="guacamole", guacamole_url=guacamole, jumpserver_url=jumpserver)
    assert chosen_gateway(fixed, None) is AccessKind.GUACAMOLE
    assert chosen_gateway(fixed, "jumpserver") is AccessKind.GUACAMOLE  # not allowed: the deployment's
    choosing = Settings(
        gateway="guacamole", workspace_gateways=True, guacamole_url=guacamole, jumpserver_url=jumpserver
    )
    assert chosen_gateway(choosing, "jumpserver") is AccessKind.JUMPSERVER
    assert chosen_gateway(choosing, "direct") is None
    only_guacamole = Settings(gateway="guacamole", workspace_gateways=True, guacamole_url=guacamole)
    assert chosen_gateway(only_guacamole, "jumpserver") is AccessKind.GUACAMOLE  # no longer configured
    assert chosen_gateway(Settings(), None) is None


def test_connection_names_are_ours_only() -> None:
    environment = uuid.uuid4()
    assert environment_of(connection_name(environment)) == environment
    assert environment_of("remotegpu-not-a-uuid") is None
    assert environment_of(f"lab-{environment}") is None


def test_admin_logins_live_in_the_store_and_never_show(db: Engine) -> None:
    store = builtin_store(db)
    assert read_gateway_login(store, "guacamole") is None
    store_gateway_login(store, "guacamole", GatewayLogin("remotegpu", "s3cret-password"))
    login = read_gateway_login(store, "guacamole")
    assert login == GatewayLogin("remotegpu", "s3cret-password")
    assert "s3cret-password" not in repr(login)


def test_a_gateway_without_its_login_names_the_fix() -> None:
    settings = Settings(gateway="guacamole", guacamole_url="http://127.0.0.1:9")
    gateways = ConfiguredGateways(settings, InMemorySecretStore())
    assert gateways.kinds() == (AccessKind.GUACAMOLE,)
    with pytest.raises(GatewayUnavailableError, match="remotegpu gateways set-credentials guacamole"):
        gateways.get(AccessKind.GUACAMOLE)
    with pytest.raises(GatewayUnavailableError, match="jumpserver: not configured"):
        gateways.get(AccessKind.JUMPSERVER)
    with pytest.raises(GatewayUnavailableError, match="set secrets_key"):
        ConfiguredGateways(settings, None).get(AccessKind.GUACAMOLE)


def test_a_workspace_chooses_among_the_gateways_the_deployment_offers(db: Engine) -> None:
    with db.begin() as connection:
        owner = Principal(make_user(connection, "olga"), "olga", "olga@example.org", UserRole.USER)
        research = create_workspace(connection, owner, "research", "").id
        access = workspace_access(connection, owner, research)
        offered = ("direct", "guacamole")

        def change(gateway: str | None, choices: tuple[str, ...] = offered) -> WorkspaceSettings:
            update = msgspec.convert({"gateway": gateway}, WorkspaceSettingsUpdate)
            return update_workspace_settings(connection, owner, access, update, gateway_choices=choices)

        assert change("guacamole").gateway == "guacamole"
        with pytest.raises(InvalidInputError, match="jumpserver is not configured") as refused:
            change("jumpserver")
        assert refused.value.field == "$.gateway"
        with pytest.raises(InvalidInputError, match="workspace_gateways setting is off"):
            change("direct", ())
        assert change(None, ()).gateway is None, "going back to the deployment's choice is always allowed"
        assert settings_of(connection, research).gateway is None
