"""The gateways this deployment has, built on first use from the settings and the stored admin logins.

A gateway client is made when the reconciler first needs it, not at start: the secrets store may be down
at start, and a lab may store the admin login after starting RemoteGPU. Until it can be made, asking for
it raises `GatewayUnavailableError` naming the fix, which the reconciler retries like any outage.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

from remotegpu.core.environments.states import AccessKind
from remotegpu.core.gateways.credentials import GatewayLogin, read_gateway_login
from remotegpu.core.gateways.gateway import Gateway, GatewayUnavailableError
from remotegpu.core.platform.settings import Settings
from remotegpu.core.secrets.store import SecretsAccessDeniedError, SecretStore, SecretsUnavailableError

GatewayFactory = Callable[[Settings, GatewayLogin], Gateway]


def _guacamole(settings: Settings, login: GatewayLogin) -> Gateway:
    from remotegpu.core.gateways.guacamole import GuacamoleGateway

    assert settings.guacamole_url is not None
    return GuacamoleGateway(
        settings.guacamole_url, login.username, login.password, data_source=settings.guacamole_data_source
    )


def _jumpserver(settings: Settings, login: GatewayLogin) -> Gateway:
    from remotegpu.core.gateways.jumpserver import JumpserverGateway

    assert settings.jumpserver_url is not None
    return JumpserverGateway(
        settings.jumpserver_url, login.username, login.password, org_id=settings.jumpserver_org
    )


_FACTORIES: dict[AccessKind, GatewayFactory] = {
    AccessKind.GUACAMOLE: _guacamole,
    AccessKind.JUMPSERVER: _jumpserver,
}


class ConfiguredGateways:
    """Gateway clients by kind, made once each; thread-safe (the reconciler's workers share it)."""

    def __init__(self, settings: Settings, store: SecretStore | None) -> None:
        self.settings = settings
        self.store = store
        self._made: dict[AccessKind, Gateway] = {}
        self._lock = threading.Lock()
        self.sent: dict[uuid.UUID, str] = {}
        """Per environment, a digest of what its gateway was last sent (the reconciler's; one worker per
        environment at a time, so plain dict operations suffice)."""

    def kinds(self) -> tuple[AccessKind, ...]:
        """The gateways whose address is set (direct is not a gateway: it holds no connections)."""
        return tuple(AccessKind(kind) for kind in self.settings.configured_gateways() if kind != "direct")

    def get(self, kind: AccessKind) -> Gateway:
        """The client of gateway `kind`; `GatewayUnavailableError` naming the fix when it cannot be made."""
        with self._lock:
            made = self._made.get(kind)
            if made is not None:
                return made
            if kind not in self.kinds():
                raise GatewayUnavailableError(f"{kind}: not configured on this deployment; set {kind}_url")
            if self.store is None:
                raise GatewayUnavailableError(
                    f"{kind}: its admin login lives in the secrets store, and none is configured (set secrets_key)"
                )
            try:
                login = read_gateway_login(self.store, kind.value)
            except (SecretsUnavailableError, SecretsAccessDeniedError) as error:
                raise GatewayUnavailableError(f"{kind}: admin login not readable: {error}") from None
            if login is None:
                raise GatewayUnavailableError(
                    f"{kind}: no admin login stored; run `remotegpu gateways set-credentials {kind}"
                    " --username USER`"
                )
            made = self._made[kind] = _FACTORIES[kind](self.settings, login)
            return made

    def forget(self, kind: AccessKind) -> None:
        """Drop the client of `kind` (its login was refused): the next `get` reads the stored login again,
        so a corrected password takes effect without a restart."""
        with self._lock:
            made = self._made.pop(kind, None)
        if made is not None:
            made.close()

    def close(self) -> None:
        """Close every client made."""
        with self._lock:
            made, self._made = list(self._made.values()), {}
        for gateway in made:
            gateway.close()
