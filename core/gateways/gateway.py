"""The gateway interface: what the reconciler asks of Guacamole, Jumpserver or the direct default.

A gateway holds at most one connection per environment, found again by its deterministic name
(`connection_name`), so a step retried after a crash finds the connection it created rather than making
a second. Every method is idempotent. Errors the next attempt may not see (the gateway down, a 5xx, a
refused admin login) raise `GatewayUnavailableError`, which the reconciler retries with backoff; their
messages name the gateway and the call, never a password, token or key.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

from remotegpu.core.environments.states import AccessKind

CONNECTION_PREFIX = "remotegpu-"
"""Every connection RemoteGPU creates is named `remotegpu-<environment id>`; the garbage collector only
ever touches names of this shape."""


def connection_name(environment_id: uuid.UUID) -> str:
    """The name of an environment's connection at any gateway."""
    return f"{CONNECTION_PREFIX}{environment_id}"


def environment_of(name: str) -> uuid.UUID | None:
    """The environment a connection name belongs to; None for a name RemoteGPU did not give."""
    if not name.startswith(CONNECTION_PREFIX):
        return None
    try:
        return uuid.UUID(name.removeprefix(CONNECTION_PREFIX))
    except ValueError:
        return None


class GatewayUnavailableError(Exception):
    """The gateway could not do it now (unreachable, 5xx, admin login refused): retry later."""


@dataclass(frozen=True)
class GatewayUser:
    """A RemoteGPU user entitled to an environment, as gateways identify users (by username)."""

    username: str
    email: str
    display_name: str


@dataclass(frozen=True)
class GatewayTarget:
    """Everything a gateway needs to reach an environment's sshd and to say who may use it."""

    environment_id: uuid.UUID
    environment_name: str
    workspace_id: uuid.UUID
    hostname: str
    """The host's effective address (admin override, else the node's own)."""
    port: int
    """The host port claimed for the environment's SSH."""
    username: str
    """The account sshd logs in as inside the container."""
    private_key: str
    """The environment's platform key (OpenSSH private key); gateways store it, nothing logs it."""
    users: tuple[GatewayUser, ...]
    """Who may open the connection: the owner, and workspace admins where the workspace allows it."""

    def __repr__(self) -> str:  # the key never reaches a log line or an exception through repr()
        return f"GatewayTarget(environment_id={self.environment_id}, hostname={self.hostname!r}, port={self.port})"


@dataclass(frozen=True)
class GatewayConnection:
    """A connection as the gateway holds it."""

    kind: AccessKind
    environment_id: uuid.UUID
    connection_id: str
    """The gateway's own identifier of the connection (Guacamole's identifier, Jumpserver's asset id)."""
    url: str
    """Where an entitled user opens it in a browser; never carries a secret."""


class Gateway(Protocol):
    """One gateway product, reached with its admin API."""

    @property
    def kind(self) -> AccessKind:
        """The endpoint kind its connections are recorded as."""
        ...

    def ensure_connection(self, target: GatewayTarget) -> GatewayConnection:
        """Create the environment's connection, or find it by name and bring it up to date (address, port,
        key), and grant every user of `target.users` access to it. Idempotent."""
        ...

    def delete_connection(self, environment_id: uuid.UUID) -> None:
        """Remove the environment's connection (and what was created with it); nothing there is fine."""
        ...

    def connected_environments(self) -> set[uuid.UUID]:
        """Environments that have a connection at the gateway (names of RemoteGPU's shape only)."""
        ...

    def close(self) -> None:
        """Release the HTTP client and sign out where the product has a session."""
        ...
