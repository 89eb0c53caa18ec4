"""The gateways' admin logins, kept in the secrets store (platform scope, `gateway-<kind>`).

RemoteGPU signs in to Guacamole's and Jumpserver's admin APIs with a service account a lab creates for
it. Its username and password live in the store as one JSON value, written by `remotegpu gateways
set-credentials`; no setting, log line or answer carries them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from remotegpu.core.secrets.store import PLATFORM, SecretNotFoundError, SecretPath, SecretStore

GATEWAY_PRODUCTS = ("guacamole", "jumpserver")


@dataclass(frozen=True)
class GatewayLogin:
    """A gateway admin account; `repr()` hides the password."""

    username: str
    password: str

    def __repr__(self) -> str:
        return f"GatewayLogin(username={self.username!r}, password='**********')"


def gateway_login_path(kind: str) -> SecretPath:
    """Where the admin login of gateway `kind` is kept."""
    return SecretPath(PLATFORM, f"gateway-{kind}")


def store_gateway_login(store: SecretStore, kind: str, login: GatewayLogin) -> None:
    """Replace the admin login of gateway `kind`."""
    store.put(gateway_login_path(kind), json.dumps({"username": login.username, "password": login.password}))


def read_gateway_login(store: SecretStore, kind: str) -> GatewayLogin | None:
    """The admin login of gateway `kind`; None when none was stored."""
    try:
        stored = store.get(gateway_login_path(kind))
    except SecretNotFoundError:
        return None
    value = json.loads(stored)
    return GatewayLogin(value["username"], value["password"])
