"""The Jumpserver gateway: each running environment is a Jumpserver host asset that its entitled users may
open in Jumpserver's web terminal (Luna), logging in to the environment's sshd with its platform key.

For an environment it keeps, in the configured organisation, all named `connection_name(environment)`:
- a host asset on the configured platform ("Linux") at the environment's address, with one `ssh`
  protocol on its claimed port (`PATCH`ed when the address or port changes);
- on it, an account named `remotegpu` for `target.username` whose `ssh_key` secret is the platform key. Its
  comment records the key's public fingerprint, so a changed key is written again and an unchanged one is
  not (Jumpserver keeps a history of every secret written, and never reads one back to compare with);
- an asset permission granting exactly the entitled users `connect` over `ssh` with that account.

Users are looked up by username and, when the organisation has none of that name, created with the
username, display name and email RemoteGPU knows: Jumpserver permits only users that exist. It mails a new
user a link to set a password (its default `password_strategy`); a lab that signs users in with LDAP,
OIDC or CAS need do nothing more. A username that exists in another organisation only is refused by
Jumpserver (usernames are unique installation-wide) and must be added to this organisation by an admin;
until then `ensure_connection` fails with a message that says so. Users are never deleted.

The REST calls, and what Jumpserver answers to them, follow jumpserver/jumpserver v3 (`apps/assets`,
`apps/accounts`, `apps/users`, `apps/perms`); the web terminal link is the one Jumpserver's own UI opens
(jumpserver/lina `src/views/myassets/index.vue`): `<url>/luna/?login_to=<asset id>&oid=<organisation>`.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

import httpx
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from remotegpu.core.accounts.ssh_keys import parse_public_key
from remotegpu.core.environments.states import AccessKind
from remotegpu.core.gateways.gateway import (
    CONNECTION_PREFIX,
    GatewayConnection,
    GatewayTarget,
    GatewayUnavailableError,
    GatewayUser,
    connection_name,
    environment_of,
)
from remotegpu.core.gateways.jumpserver_api import JumpserverApi, JumpserverRequestError

DEFAULT_ORG_ID = "00000000-0000-0000-0000-000000000002"
"""Jumpserver's built-in "Default" organisation, the only one of its community edition."""
ACCOUNT_NAME = "remotegpu"
HOSTS = "/api/v1/assets/hosts/"
ACCOUNTS = "/api/v1/accounts/accounts/"
USERS = "/api/v1/users/users/"
PERMISSIONS = "/api/v1/perms/asset-permissions/"
PLATFORMS = "/api/v1/assets/platforms/"
ACTIONS = ("connect",)
PROTOCOL = "ssh"


class JumpserverGateway:
    """A Jumpserver v3 reached with an admin's username and password (see the module docstring)."""

    def __init__(
        self,
        url: str,
        username: str,
        password: str,
        *,
        org_id: str = DEFAULT_ORG_ID,
        platform: str = "Linux",
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.org_id = org_id
        self.platform = platform
        self._api = JumpserverApi(
            url, username, password, org_id=org_id, timeout=timeout, transport=transport
        )
        self._platform_id: int | None = None

    def __repr__(self) -> str:
        return f"JumpserverGateway(url={self.url!r}, org_id={self.org_id!r})"

    @property
    def kind(self) -> AccessKind:
        return AccessKind.JUMPSERVER

    def ensure_connection(self, target: GatewayTarget) -> GatewayConnection:
        name = connection_name(target.environment_id)
        host = self._ensure_host(name, target)
        self._ensure_account(host["id"], target)
        user_ids = [self._user_id(user) for user in target.users]
        self._ensure_permission(name, host["id"], user_ids, target.username)
        return GatewayConnection(
            kind=AccessKind.JUMPSERVER,
            environment_id=target.environment_id,
            connection_id=host["id"],
            url=self.terminal_url(host["id"]),
        )

    def delete_connection(self, environment_id: uuid.UUID) -> None:
        name = connection_name(environment_id)
        for permission in self._named(PERMISSIONS, name, "find permission"):
            self._api.call(
                "DELETE", f"{PERMISSIONS}{permission['id']}/", what="delete permission", missing_ok=True
            )
        for host in self._named(HOSTS, name, "find host"):
            for account in self._accounts_of(host["id"]):
                self._api.call(
                    "DELETE", f"{ACCOUNTS}{account['id']}/", what="delete account", missing_ok=True
                )
            self._api.call("DELETE", f"{HOSTS}{host['id']}/", what="delete host", missing_ok=True)

    def connected_environments(self) -> set[uuid.UUID]:
        hosts = self._api.list_all(HOSTS, what="list hosts", params={"search": CONNECTION_PREFIX})
        return {env for host in hosts if (env := environment_of(str(host.get("name", "")))) is not None}

    def close(self) -> None:
        self._api.close()

    def terminal_url(self, asset_id: str) -> str:
        return f"{self.url}/luna/?{urlencode({'login_to': asset_id, 'oid': self.org_id})}"

    # The asset

    def _ensure_host(self, name: str, target: GatewayTarget) -> dict[str, Any]:
        host = next(iter(self._named(HOSTS, name, "find host")), None)
        if host is None:
            body = {
                "name": name,
                "address": target.hostname,
                "platform": self._platform(),
                "protocols": [{"name": PROTOCOL, "port": target.port}],
                "is_active": True,
                "comment": f"RemoteGPU environment {target.environment_name} (workspace {target.workspace_id})",
            }
            try:
                return dict(self._api.call("POST", HOSTS, what="create host", json=body))
            except JumpserverRequestError as error:  # made by an attempt whose answer never came back?
                host = next(iter(self._named(HOSTS, name, "find host")), None)
                if "name" not in error.fields or host is None:
                    raise
        protocols = [p for p in host.get("protocols", []) if p.get("name") != PROTOCOL]
        current = next((p.get("port") for p in host.get("protocols", []) if p.get("name") == PROTOCOL), None)
        if host.get("address") == target.hostname and current == target.port:
            return host
        changes = {
            "address": target.hostname,
            "protocols": [{"name": PROTOCOL, "port": target.port}, *protocols],
        }
        return dict(self._api.call("PATCH", f"{HOSTS}{host['id']}/", what="update host", json=changes))

    def _platform(self) -> int:
        if self._platform_id is None:
            found = self._named(PLATFORMS, self.platform, "find platform")
            if not found:
                raise GatewayUnavailableError(
                    f"Jumpserver find platform: no platform named {self.platform!r}"
                )
            self._platform_id = int(found[0]["id"])
        return self._platform_id

    # The account

    def _ensure_account(self, host_id: str, target: GatewayTarget) -> None:
        comment = f"RemoteGPU platform key {_fingerprint(target.private_key)}"
        account = next((a for a in self._accounts_of(host_id) if a.get("name") == ACCOUNT_NAME), None)
        if account is not None and account.get("username") != target.username:
            # Jumpserver never changes an account's username: replace the account.
            self._api.call("DELETE", f"{ACCOUNTS}{account['id']}/", what="delete account", missing_ok=True)
            account = None
        secret = {"secret_type": "ssh_key", "secret": target.private_key, "comment": comment}
        if account is None:
            body = {
                "asset": host_id,
                "name": ACCOUNT_NAME,
                "username": target.username,
                "privileged": False,
                **secret,
            }
            try:
                self._api.call("POST", ACCOUNTS, what="create account", json=body)
                return
            except JumpserverRequestError:  # made by an attempt whose answer never came back?
                account = next((a for a in self._accounts_of(host_id) if a.get("name") == ACCOUNT_NAME), None)
                if account is None or account.get("username") != target.username:
                    raise
        if account.get("comment") != comment or _value(account.get("secret_type")) != "ssh_key":
            self._api.call("PATCH", f"{ACCOUNTS}{account['id']}/", what="update account", json=secret)

    def _accounts_of(self, host_id: str) -> list[dict[str, Any]]:
        accounts = self._api.list_all(ACCOUNTS, what="list accounts", params={"asset": host_id})
        return [a for a in accounts if (a.get("asset") or {}).get("id", host_id) == host_id]

    # Users and the permission

    def _user_id(self, user: GatewayUser) -> str:
        found = self._api.list_all(USERS, what="find user", params={"username": user.username})
        match = next((u for u in found if u.get("username") == user.username), None)
        if match is not None:
            return str(match["id"])
        body = {
            "username": user.username,
            "name": user.display_name or user.username,
            "email": user.email,
            "password_strategy": "email",
        }
        try:
            return str(self._api.call("POST", USERS, what="create user", json=body)["id"])
        except JumpserverRequestError as error:
            if "username" not in error.fields:
                raise
            raise GatewayUnavailableError(
                f"{error} (the user exists in another Jumpserver organisation: add them to {self.org_id})"
            ) from None

    def _ensure_permission(self, name: str, host_id: str, user_ids: list[str], username: str) -> None:
        wanted: dict[str, Any] = {
            "users": sorted(set(user_ids)),
            "assets": [host_id],
            "accounts": [username],
            "actions": list(ACTIONS),
            "protocols": [PROTOCOL],
            "is_active": True,
        }
        permission = next(iter(self._named(PERMISSIONS, name, "find permission")), None)
        if permission is None:
            body = {"name": name, **wanted, "comment": "Managed by RemoteGPU: who may open the environment"}
            try:
                self._api.call("POST", PERMISSIONS, what="create permission", json=body)
                return
            except JumpserverRequestError as error:
                permission = next(iter(self._named(PERMISSIONS, name, "find permission")), None)
                if "name" not in error.fields or permission is None:
                    raise
        detail = self._api.call("GET", f"{PERMISSIONS}{permission['id']}/", what="read permission")
        if _permission_of(detail) != _permission_of(wanted):
            self._api.call(
                "PATCH", f"{PERMISSIONS}{permission['id']}/", what="update permission", json=wanted
            )

    def _named(self, path: str, name: str, what: str) -> list[dict[str, Any]]:
        """Objects named exactly `name` (the `name` filter is exact, but checked here too)."""
        return [
            item
            for item in self._api.list_all(path, what=what, params={"name": name})
            if item.get("name") == name
        ]


def _permission_of(permission: dict[str, Any]) -> tuple[Any, ...]:
    """What RemoteGPU decides about a permission, from Jumpserver's answer or our request alike."""

    def ids(values: Any) -> list[str]:
        return sorted(str(v.get("id") if isinstance(v, dict) else v) for v in values or [])

    return (
        ids(permission.get("users")),
        ids(permission.get("assets")),
        sorted(permission.get("accounts") or []),
        sorted(_value(a) for a in permission.get("actions") or []),
        sorted(permission.get("protocols") or []),
        bool(permission.get("is_active")),
    )


def _value(choice: Any) -> Any:
    """A `{value, label}` choice as Jumpserver writes it, or the bare value."""
    return choice.get("value") if isinstance(choice, dict) else choice


def _fingerprint(private_key: str) -> str:
    """The platform key's public fingerprint (`SHA256:…`); the key itself is never quoted."""
    try:
        key = serialization.load_ssh_private_key(private_key.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise GatewayUnavailableError(
            "Jumpserver account: the platform key is not an OpenSSH private key"
        ) from None
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return parse_public_key(public.decode()).fingerprint
