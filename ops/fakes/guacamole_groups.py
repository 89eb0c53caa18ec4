"""The fake Guacamole's user groups: the directory, their members, and what a member gains through them.

Followed from guacamole-client 1.5.5 (apache/guacamole-client): the REST layer's
`rest/usergroup/UserGroupResource.java` (`…/userGroups/{id}` with the `memberUsers`, `memberUserGroups`,
`userGroups` and `permissions` sub-resources), `APIUserGroup.java` (`{identifier, attributes}`, NON_NULL),
`UserGroupObjectTranslator.java` (attributes filtered by the schema), `rest/directory/DirectoryResource.java`
(POST answers the submitted object, an unknown id is 404 `Not found: "…"`), `rest/user/UserResource.java`
(a user's `userGroups`), `rest/identifier/RelatedObjectSetResource.java` and `RelatedObjectSetPatch.java`
(GET lists identifiers; PATCH takes JSON Patch `add` / `remove` on path "/" with the identifier as value,
checks every operation before applying any, then adds all and removes all); and the JDBC extension
(`guacamole-auth-jdbc-base` `usergroup/UserGroupService.java`: blank names and duplicates are
`GuacamoleClientException`s; `usergroup/ModeledUserGroup.java`: the only attribute is `disabled`;
`base/RelatedObjectSet.java`: only a privileged user, or one with UPDATE, alters a relation; the PostgreSQL
`UserGroupMemberUserMapper.xml`: an insert selects members by name, so an unknown name or an existing member
is silently skipped; `EntityMapper.xml` `selectEffectiveGroupIdentifiers`: a user's effective groups are the
enabled groups it belongs to, directly or through enabled member groups; `001-create-schema.sql`: deleting a
group or a connection cascades to memberships and permissions).

Simplification, on the side of refusing: permissions on user groups themselves (`userGroupPermissions`)
are not modelled, so only an administrator sees or changes a group.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from remotegpu.ops.fakes.guacamole_errors import (
    bad_request,
    filtered,
    internal_error,
    not_found,
    permission_denied,
)

if TYPE_CHECKING:
    from remotegpu.ops.fakes.guacamole_directory import FakeUser, GuacamoleDirectory

USER_GROUP_ATTRIBUTES = ("disabled",)
"""`ModeledUserGroup.ATTRIBUTE_NAMES`."""


class PermissionHolder(Protocol):
    """A user or a user group: what a permission patch changes."""

    connection_permissions: dict[str, set[str]]
    system_permissions: set[str]


@dataclass
class FakeUserGroup:
    identifier: str
    attributes: dict[str, str | None] = field(default_factory=dict)
    connection_permissions: dict[str, set[str]] = field(default_factory=dict)
    system_permissions: set[str] = field(default_factory=set)
    member_users: set[str] = field(default_factory=set)
    member_groups: set[str] = field(default_factory=set)

    @property
    def disabled(self) -> bool:
        """`guacamole_user_group.disabled`, set through the `disabled` attribute ("true")."""
        return self.attributes.get("disabled") == "true"

    def api(self) -> dict[str, Any]:
        """`APIUserGroup` as an administrator reads it (restricted attributes exposed)."""
        return {"identifier": self.identifier, "attributes": {"disabled": "true" if self.disabled else None}}

    def permission_set(self) -> dict[str, Any]:
        """`APIPermissionSet` of the permissions granted to the group itself."""
        return {
            "connectionPermissions": {
                key: sorted(types) for key, types in self.connection_permissions.items()
            },
            "connectionGroupPermissions": {},
            "sharingProfilePermissions": {},
            "activeConnectionPermissions": {},
            "userPermissions": {},
            "userGroupPermissions": {},
            "systemPermissions": sorted(self.system_permissions),
        }


class UserGroups:
    """One data source's user groups and memberships; methods raise `ApiError` as the product does."""

    def __init__(self) -> None:
        self.groups: dict[str, FakeUserGroup] = {}

    def listing(self, admin: bool) -> dict[str, Any]:
        return {key: group.api() for key, group in self.groups.items()} if admin else {}

    def get(self, admin: bool, identifier: str) -> FakeUserGroup:
        found = self.groups.get(identifier)
        if found is None or not admin:
            raise not_found(f'Not found: "{identifier}"')
        return found

    def create(self, may_create: bool, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request("Data must be submitted when creating objects.")
        attributes = body.get("attributes")
        if not isinstance(attributes, dict):
            raise internal_error()  # filterAttributes on null: NPE
        kept = filtered(attributes, USER_GROUP_ATTRIBUTES)
        if not may_create:
            raise permission_denied()
        identifier = body.get("identifier")
        if not isinstance(identifier, str) or not identifier.strip():
            raise bad_request("The group name must not be blank.")
        if identifier in self.groups:
            raise bad_request(f'Group "{identifier}" already exists.')
        self.groups[identifier] = FakeUserGroup(identifier, kept)
        return {**body, "attributes": kept}

    def delete(self, admin: bool, identifier: str) -> None:
        self.get(admin, identifier)
        del self.groups[identifier]
        for group in self.groups.values():  # guacamole_user_group_member: ON DELETE CASCADE
            group.member_groups.discard(identifier)

    def groups_of_user(self, username: str) -> set[str]:
        """The groups a user is a direct member of (a user's `userGroups`)."""
        return {key for key, group in self.groups.items() if username in group.member_users}

    def parents_of(self, identifier: str) -> set[str]:
        """The groups a group is a direct member of (a group's `userGroups`)."""
        return {key for key, group in self.groups.items() if identifier in group.member_groups}

    def effective_groups(self, username: str) -> list[FakeUserGroup]:
        """`selectEffectiveGroupIdentifiers`: enabled groups reached from the user through enabled groups."""
        reached: dict[str, FakeUserGroup] = {}
        frontier = [self.groups[key] for key in self.groups_of_user(username)]
        while frontier:
            group = frontier.pop()
            if group.disabled or group.identifier in reached:
                continue
            reached[group.identifier] = group
            frontier.extend(self.groups[key] for key in self.parents_of(group.identifier))
        return list(reached.values())

    def forget_connection(self, identifier: str) -> None:
        """guacamole_connection_permission: ON DELETE CASCADE, for groups too."""
        for group in self.groups.values():
            group.connection_permissions.pop(identifier, None)


def related_set_patch(patches: Any) -> tuple[set[str], set[str]]:
    """`RelatedObjectSetResource.patchObjects`: every operation checked, then (added, removed) identifiers.
    A null value adds or removes nothing (`name IN (NULL)` matches no row)."""
    if not isinstance(patches, list) or not all(isinstance(p, dict) for p in patches):
        raise bad_request("Unable to process JSON patch: not a list of operations.")
    added: set[str] = set()
    removed: set[str] = set()
    for patch in patches:
        op, path, value = patch.get("op"), patch.get("path"), patch.get("value")
        if op not in ("add", "remove", "test", "copy", "replace", "move"):
            raise bad_request(f"Unable to process JSON patch: unknown operation {op!r}.")  # Jackson's enum
        if isinstance(value, (dict, list)):
            raise bad_request("Unable to process JSON patch: the value is not a string.")
        if path != "/":
            raise bad_request(f'Unsupported patch path: "{path}"')
        if op not in ("add", "remove"):
            raise bad_request(f'Unsupported patch operation: "{op}"')
        if value is not None:
            (added if op == "add" else removed).add(value if isinstance(value, str) else json.dumps(value))
    return added, removed


Routed = tuple[int, Any]
"""Status and JSON payload of an answer (payload None: 204, no body)."""


def route(
    directory: GuacamoleDirectory, viewer: FakeUser, method: str, rest: list[str], payload: Any
) -> Routed | None:
    """The user group routes under `/api/session/data/{ds}/`, a user's `userGroups` and
    `effectivePermissions`; None: not one of them."""
    if method == "GET":
        return _read(directory, viewer, rest)
    if method == "PATCH" and len(rest) == 3 and rest[2] in ("memberUsers", "memberUserGroups", "userGroups"):
        _patch_relation(directory, viewer, rest[0], rest[1], rest[2], payload)
        return 204, None
    groups = directory.user_groups
    match method, rest:
        case "POST", ["userGroups"]:
            return 200, groups.create(
                viewer.is_admin or "CREATE_USER_GROUP" in viewer.system_permissions, payload
            )
        case "DELETE", ["userGroups", identifier]:
            groups.delete(viewer.is_admin, identifier)
            return 204, None
    return None


def _read(directory: GuacamoleDirectory, viewer: FakeUser, rest: list[str]) -> Routed | None:
    groups, admin = directory.user_groups, viewer.is_admin
    match rest:
        case ["userGroups"]:
            return 200, groups.listing(admin)
        case ["userGroups", identifier]:
            return 200, groups.get(admin, identifier).api()
        case ["userGroups", identifier, "permissions"]:
            return 200, groups.get(admin, identifier).permission_set()
        case ["userGroups", identifier, "memberUsers"]:
            return 200, sorted(groups.get(admin, identifier).member_users)
        case ["userGroups", identifier, "memberUserGroups"]:
            return 200, sorted(groups.get(admin, identifier).member_groups)
        case ["userGroups", identifier, "userGroups"]:
            groups.get(admin, identifier)
            return 200, sorted(groups.parents_of(identifier))
        case ["users", username, "userGroups"]:
            directory.user(viewer, username)
            return 200, sorted(groups.groups_of_user(username)) if admin else []
        case ["users", username, "effectivePermissions"]:
            user = directory.user(viewer, username)
            effective = directory.effective_connection_permissions(user)
            connections = {key: sorted(types) for key, types in effective.items()}
            return 200, {**user.permission_set(), "connectionPermissions": connections}
    return None


def _patch_relation(
    directory: GuacamoleDirectory, viewer: FakeUser, kind: str, identifier: str, relation: str, payload: Any
) -> None:
    """PATCH a related object set: a group's member users or member groups, a group's or a user's parent
    groups. Only names the data source knows are added (`INSERT … SELECT` by name)."""
    groups = directory.user_groups.groups
    if kind == "users":
        directory.user(viewer, identifier)
    else:
        directory.user_groups.get(viewer.is_admin, identifier)
    added, removed = related_set_patch(payload)
    if (added or removed) and not viewer.is_admin:
        raise permission_denied()  # RelatedObjectSet.canAlterRelation: UPDATE on both sides, not modelled
    if relation in ("memberUsers", "memberUserGroups"):
        group = groups[identifier]
        members, known = (
            (group.member_users, directory.users)
            if relation == "memberUsers"
            else (group.member_groups, groups)
        )
        members.update(added & known.keys())
        members.difference_update(removed)
        return
    for parent in added & groups.keys():  # `userGroups`: the groups this user or group is a member of
        (groups[parent].member_users if kind == "users" else groups[parent].member_groups).add(identifier)
    for parent in removed & groups.keys():
        (groups[parent].member_users if kind == "users" else groups[parent].member_groups).discard(identifier)
