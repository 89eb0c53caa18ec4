"""What the fake Guacamole holds: connections, users and their permissions, with the JDBC extension's rules.

Guacamole's REST layer (`rest/directory/DirectoryResource.java`, `DirectoryObjectResource.java`,
`rest/connection/*`, `rest/user/*`, `rest/permission/PermissionSetResource.java`) hands every change to
the data source's extension; the rules that reject one are those of `guacamole-auth-jdbc-base`
(`connection/ConnectionService.java`, `user/UserService.java`, `user/ModeledUser.java`,
`permission/ModeledObjectPermissionService.java`, the PostgreSQL mappers), release 1.5.5. They are
modelled here, each failure as the `GuacamoleException` the product throws, answered as
`rest/RESTExceptionMapper.java` answers it (an `APIError` body, see `ApiError.body`).

User groups, and what a user gains through them, are `guacamole_groups`'; a user's connection permissions
count as the product's effective permissions do (its own and its effective groups').

Simplifications, all on the side of refusing: a user other than an administrator (system permission
ADMINISTER) may read the connections it effectively has READ on and itself, and nothing else; connection
groups and sharing profiles do not exist, so the only parent is ROOT.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from remotegpu.ops.fakes.guacamole_errors import (
    ApiError,
    bad_request,
    filtered,
    internal_error,
    not_found,
    permission_denied,
)
from remotegpu.ops.fakes.guacamole_groups import PermissionHolder, UserGroups

ROOT = "ROOT"
"""`RootConnectionGroup.IDENTIFIER`: the parent of every top-level connection."""

CONNECTION_ATTRIBUTES = (
    "guacd-hostname",
    "guacd-port",
    "guacd-encryption",
    "max-connections",
    "max-connections-per-user",
    "weight",
    "failover-only",
)
"""The JDBC extension's connection attribute schema (`ModeledConnection.ATTRIBUTES`); others are dropped."""

USER_ATTRIBUTES = (
    "disabled",
    "expired",
    "access-window-start",
    "access-window-end",
    "valid-from",
    "valid-until",
    "timezone",
    "guac-full-name",
    "guac-email-address",
    "guac-organization",
    "guac-organizational-role",
)
"""The JDBC extension's user attribute schema (`ModeledUser.ATTRIBUTES`, `User.Attribute`)."""

OBJECT_PERMISSIONS = ("READ", "UPDATE", "DELETE", "ADMINISTER")
"""`ObjectPermission.Type`; any other value fails `valueOf` (an internal error)."""

SYSTEM_PERMISSIONS = (
    "CREATE_CONNECTION",
    "CREATE_CONNECTION_GROUP",
    "CREATE_SHARING_PROFILE",
    "CREATE_USER",
    "CREATE_USER_GROUP",
    "AUDIT",
    "ADMINISTER",
)


@dataclass
class FakeConnection:
    identifier: str
    name: str
    protocol: str
    parameters: dict[str, str] = field(repr=False)
    attributes: dict[str, str | None]
    parent_identifier: str = ROOT

    def api(self) -> dict[str, Any]:
        """`APIConnection` as the directory lists it (no parameters: those have their own resource)."""
        return {
            "name": self.name,
            "identifier": self.identifier,
            "parentIdentifier": self.parent_identifier,
            "protocol": self.protocol,
            "attributes": {name: self.attributes.get(name) for name in CONNECTION_ATTRIBUTES},
            "activeConnections": 0,
        }


@dataclass
class FakeUser:
    username: str
    password: str | None = field(repr=False)
    """None: created without one (the JDBC extension stores a random hash: no password login)."""
    attributes: dict[str, str | None] = field(default_factory=dict)
    connection_permissions: dict[str, set[str]] = field(default_factory=dict)
    system_permissions: set[str] = field(default_factory=set)

    @property
    def is_admin(self) -> bool:
        return "ADMINISTER" in self.system_permissions

    def api(self) -> dict[str, Any]:
        """`APIUser` (NON_NULL: no password, no lastActive for a user that never logged in)."""
        return {
            "username": self.username,
            "attributes": {name: self.attributes.get(name) for name in USER_ATTRIBUTES},
        }

    def permission_set(self) -> dict[str, Any]:
        """`APIPermissionSet`: a set of types per object identifier, and the system permissions."""
        return {
            "connectionPermissions": {
                key: sorted(types) for key, types in self.connection_permissions.items()
            },
            "connectionGroupPermissions": {},
            "sharingProfilePermissions": {},
            "activeConnectionPermissions": {},
            "userPermissions": {self.username: ["READ"]},
            "userGroupPermissions": {},
            "systemPermissions": sorted(self.system_permissions),
        }


class GuacamoleDirectory:
    """One data source's objects; every method acts as `viewer` and raises `ApiError` as the product does."""

    def __init__(self) -> None:
        self.connections: dict[str, FakeConnection] = {}
        self.users: dict[str, FakeUser] = {}
        self.user_groups = UserGroups()
        self._ids = itertools.count(1)

    def effective_connection_permissions(self, user: FakeUser) -> dict[str, set[str]]:
        """`ModeledUser.getEffectivePermissions`: the user's own and its effective groups' permissions."""
        held: dict[str, set[str]] = {}
        holders: list[PermissionHolder] = [user, *self.user_groups.effective_groups(user.username)]
        for holder in holders:
            for identifier, types in holder.connection_permissions.items():
                held.setdefault(identifier, set()).update(types)
        return held

    # Connections: rest/connection/*, auth/jdbc/connection/ConnectionService.java

    def list_connections(self, viewer: FakeUser) -> dict[str, Any]:
        return {key: c.api() for key, c in self.connections.items() if self._can_read(viewer, key)}

    def connection(self, viewer: FakeUser, identifier: str) -> FakeConnection:
        found = self.connections.get(identifier)
        if found is None or not self._can_read(viewer, identifier):
            raise not_found(f'Not found: "{identifier}"')
        return found

    def parameters(self, viewer: FakeUser, identifier: str) -> dict[str, str]:
        found = self.connection(viewer, identifier)
        if not viewer.is_admin and "UPDATE" not in self.effective_connection_permissions(viewer).get(
            identifier, set()
        ):
            raise ApiError(403, "PERMISSION_DENIED", "Permission to read connection parameters denied.")
        return dict(found.parameters)

    def create_connection(self, viewer: FakeUser, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request("Data must be submitted when creating objects.")
        if not viewer.is_admin and "CREATE_CONNECTION" not in viewer.system_permissions:
            raise permission_denied()
        name, parent, protocol, parameters, attributes = self._connection_fields(body)
        if self._named(parent, name) is not None:
            raise bad_request(f'The connection "{name}" already exists.')
        identifier = str(next(self._ids))
        self.connections[identifier] = FakeConnection(
            identifier, name, protocol, parameters, attributes, parent
        )
        return {**body, "identifier": identifier, "attributes": attributes, "activeConnections": 0}

    def update_connection(self, viewer: FakeUser, identifier: str, body: Any) -> None:
        found = self.connection(viewer, identifier)
        if not isinstance(body, dict):
            raise bad_request("Data must be submitted when updating objects.")
        if not viewer.is_admin:
            raise permission_denied()
        name, parent, protocol, parameters, attributes = self._connection_fields(body)
        same_name = self._named(parent, name)
        if same_name is not None and same_name.identifier != identifier:
            raise bad_request(f'The connection "{name}" already exists.')
        found.name, found.parent_identifier, found.protocol = name, parent, protocol
        found.parameters, found.attributes = parameters, attributes

    def delete_connection(self, viewer: FakeUser, identifier: str) -> None:
        self.connection(viewer, identifier)
        if not viewer.is_admin:
            raise permission_denied()
        del self.connections[identifier]
        for user in self.users.values():  # guacamole_connection_permission: ON DELETE CASCADE
            user.connection_permissions.pop(identifier, None)
        self.user_groups.forget_connection(identifier)

    def _connection_fields(
        self, body: dict[str, Any]
    ) -> tuple[str, str, str, dict[str, str], dict[str, str | None]]:
        attributes, parameters = body.get("attributes"), body.get("parameters")
        if not isinstance(attributes, dict) or not isinstance(parameters, dict):
            raise internal_error()  # filterAttributes / GuacamoleConfiguration.setParameters on null: NPE
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise bad_request("Connection names must not be blank.")
        parent = body.get("parentIdentifier") or ROOT
        protocol = body.get("protocol")
        if parent != ROOT or not isinstance(protocol, str):
            raise internal_error()  # no such parent group / protocol NOT NULL: an SQL error
        kept = {key: str(value) for key, value in parameters.items() if value not in (None, "")}
        return name, parent, protocol, kept, filtered(attributes, CONNECTION_ATTRIBUTES)

    def _named(self, parent: str, name: str) -> FakeConnection | None:
        """`connectionMapper.selectOneByName(parent, name)`: names are unique within a parent group."""
        return next(
            (c for c in self.connections.values() if c.parent_identifier == parent and c.name == name), None
        )

    def _can_read(self, viewer: FakeUser, identifier: str) -> bool:
        return viewer.is_admin or "READ" in self.effective_connection_permissions(viewer).get(
            identifier, set()
        )

    # Users and permissions: rest/user/*, rest/permission/*, auth/jdbc/user/UserService.java

    def list_users(self, viewer: FakeUser) -> dict[str, Any]:
        return {name: user.api() for name, user in self.users.items() if viewer.is_admin or user is viewer}

    def user(self, viewer: FakeUser, username: str) -> FakeUser:
        found = self.users.get(username)
        if found is None or not (viewer.is_admin or found is viewer):
            raise not_found(f'Not found: "{username}"')
        return found

    def create_user(self, viewer: FakeUser, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request("Data must be submitted when creating objects.")
        if not viewer.is_admin and "CREATE_USER" not in viewer.system_permissions:
            raise permission_denied()
        attributes = body.get("attributes")
        if not isinstance(attributes, dict):
            raise internal_error()
        username = body.get("username")
        if not isinstance(username, str) or not username.strip():
            raise bad_request("The username must not be blank.")
        if username in self.users:
            raise bad_request(f'User "{username}" already exists.')
        password = body.get("password")
        kept = filtered(attributes, USER_ATTRIBUTES)
        self.users[username] = FakeUser(username, password if isinstance(password, str) else None, kept)
        return {**body, "attributes": kept}

    def patch_permissions(self, viewer: FakeUser, target: PermissionHolder, patches: Any) -> list[str]:
        """Apply a JSON Patch of permissions to a user or group the viewer found; returns the valid paths the
        fake does not model."""
        if not viewer.is_admin:
            raise permission_denied()
        if not isinstance(patches, list) or not all(isinstance(p, dict) for p in patches):
            raise bad_request("Unable to process JSON patch: not a list of operations.")
        changes: list[tuple[str, str, str]] = []
        unmodelled: list[str] = []
        for patch in patches:
            change = _permission_change(patch)
            if isinstance(change, str):
                unmodelled.append(change)
            else:
                changes.append(change)
        if any(identifier and identifier not in self.connections for _, identifier, _ in changes):
            raise internal_error()  # the insert's foreign key to guacamole_connection
        for wanted in ("add", "remove"):  # PermissionSetPatch.apply: every addition, then every removal
            for op, identifier, value in changes:
                if op == wanted:
                    _apply(target, op, identifier, value)
        return unmodelled


_UNMODELLED_PATHS = (
    "/connectionGroupPermissions/",
    "/sharingProfilePermissions/",
    "/activeConnectionPermissions/",
    "/userPermissions/",
    "/userGroupPermissions/",
)


def _permission_change(patch: dict[str, Any]) -> tuple[str, str, str] | str:
    """One patch operation as (op, connection identifier or "" for a system permission, type), or its path
    when it is valid in Guacamole but not modelled here."""
    op, path, value = patch.get("op"), str(patch.get("path", "")), patch.get("value")
    if op not in ("add", "remove", "test", "copy", "replace", "move"):
        raise bad_request(f"Unable to process JSON patch: unknown operation {op!r}.")  # Jackson's enum
    if path.startswith(_UNMODELLED_PATHS):
        return path
    allowed: tuple[str, ...]
    if path.startswith("/connectionPermissions/"):
        identifier, allowed = path.removeprefix("/connectionPermissions/"), OBJECT_PERMISSIONS
    elif path == "/systemPermissions":
        identifier, allowed = "", SYSTEM_PERMISSIONS
    else:
        raise bad_request(f'Unsupported patch path: "{path}"')
    if value not in allowed:
        raise internal_error()  # ObjectPermission.Type.valueOf / SystemPermission.Type.valueOf
    if op not in ("add", "remove"):
        raise bad_request(f'Unsupported patch operation: "{op}"')
    return op, identifier, str(value)


def _apply(user: PermissionHolder, op: str, identifier: str, value: str) -> None:
    held = (
        user.connection_permissions.setdefault(identifier, set()) if identifier else user.system_permissions
    )
    if op == "add":
        held.add(value)
    else:
        held.discard(value)
    if identifier and not held:
        del user.connection_permissions[identifier]
