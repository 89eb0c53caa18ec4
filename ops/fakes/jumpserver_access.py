"""The access side of a fake Jumpserver: users and asset permissions, validated and written as Jumpserver
v3's serializers do.

Followed from jumpserver/jumpserver at tag v3.10.23:
- users: `apps/users/serializers/user.py` (`username`, `name`, `email` required; `password_strategy`
  `email` by default: Jumpserver mails a link to set a password), `apps/users/models/user.py` (username
  and email unique across the installation: "User with this Username already exists."),
  `apps/users/api/mixins.py` (a list shows the current organisation's members), `apps/users/filters.py`
  (exact `id`, `username`, `email`, `name`, `is_active`; `search` over username, email, name);
- asset permissions: `apps/perms/serializers/permission.py` (`users` and `assets` as `[{id, name}]`, taken
  as ids — users from the whole installation, assets from the organisation; `accounts` and `protocols`
  string lists, `protocols` defaulting to `["all"]`; `actions` names in, `{value, label}` out, all of them
  by default; the list serializer carries `*_amount` instead of the relations),
  `apps/perms/models/asset_permission.py` (name unique per organisation, ordered by name),
  `apps/perms/filters.py` (`name`, `asset_id`), `apps/common/utils/django.py` (25550 days of validity).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from remotegpu.ops.fakes.jumpserver_assets import DEFAULT_ORG, Assets
from remotegpu.ops.fakes.jumpserver_fields import (
    UNIQUE,
    ApiError,
    actions_in,
    actions_json,
    actions_of,
    boolean,
    choice,
    jms_time,
    matches,
    related_ids,
    string_list,
    text,
)

PERMISSION_VALIDITY = dt.timedelta(days=25550)


@dataclass
class FakeUser:
    id: str
    username: str
    name: str
    email: str
    orgs: set[str]
    password: str | None = field(default=None, repr=False)
    is_superuser: bool = False
    is_active: bool = True


@dataclass
class FakePermission:
    id: str
    org_id: str
    name: str
    date_start: dt.datetime
    date_expired: dt.datetime
    user_ids: list[str] = field(default_factory=list)
    asset_ids: list[str] = field(default_factory=list)
    accounts: list[str] = field(default_factory=list)
    protocols: list[str] = field(default_factory=lambda: ["all"])
    actions: int = actions_of(["all"])
    is_active: bool = True
    comment: str = ""


class Access:
    """Users and asset permissions; reads hosts from `assets`. The server holds its lock around each call."""

    def __init__(self, assets: Assets) -> None:
        self.assets = assets
        self.users: dict[str, FakeUser] = {}
        self.permissions: dict[str, FakePermission] = {}

    # Users

    def add_user(
        self,
        username: str,
        *,
        email: str,
        name: str,
        password: str | None = None,
        orgs: Iterable[str] = (DEFAULT_ORG,),
        superuser: bool = False,
    ) -> FakeUser:
        user = FakeUser(str(uuid.uuid4()), username, name, email, set(orgs), password, superuser)
        self.users[user.id] = user
        return user

    def user_named(self, username: str) -> FakeUser | None:
        return next((u for u in self.users.values() if u.username == username), None)

    def list_users(self, org_id: str, query: dict[str, str]) -> list[dict[str, Any]]:
        found = [
            u
            for u in self.users.values()
            if org_id in u.orgs
            and matches(query, "id", u.id)
            and matches(query, "username", u.username)
            and matches(query, "email", u.email)
            and matches(query, "name", u.name)
            and matches(query, "is_active", u.is_active)
        ]
        if search := query.get("search", "").lower():
            found = [u for u in found if any(search in v.lower() for v in (u.username, u.email, u.name))]
        return [user_json(u) for u in found]

    def user(self, org_id: str, user_id: str) -> FakeUser:
        user = self.users.get(user_id)
        if user is None or org_id not in user.orgs:
            raise ApiError.not_found("User")
        return user

    def create_user(self, org_id: str, data: dict[str, Any]) -> dict[str, Any]:
        """The new user joins the organisation it is created in."""
        errors: dict[str, Any] = {}
        username = text(data, "username", errors, required=True)
        name = text(data, "name", errors, required=True)
        email = text(data, "email", errors, required=True)
        strategy = choice(data, "password_strategy", ("email", "custom"), errors, default="email")
        is_active = boolean(data, "is_active", errors, default=True)
        if email and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
            errors["email"] = ["Enter a valid email address."]
        elif email and any(u.email == email for u in self.users.values()):
            errors["email"] = ["User with this Email already exists."]
        if username and self.user_named(username):
            errors["username"] = ["User with this Username already exists."]
        ApiError.raise_if(errors)
        assert username is not None
        assert name is not None
        assert email is not None
        password = data.get("password") if strategy == "custom" else None
        user = self.add_user(username, email=email, name=name, password=password, orgs=(org_id,))
        user.is_active = is_active
        return user_json(user)

    # Asset permissions

    def list_permissions(self, org_id: str, query: dict[str, str]) -> list[dict[str, Any]]:
        found = sorted(
            (
                p
                for p in self.permissions.values()
                if p.org_id == org_id
                and matches(query, "name", p.name)
                and query.get("asset_id") in (None, "", *p.asset_ids)
            ),
            key=lambda p: p.name,
        )
        if search := query.get("search", "").lower():
            found = [p for p in found if search in p.name.lower()]
        return [self.permission_json(p, detail=False) for p in found]

    def permission(self, org_id: str, permission_id: str) -> FakePermission:
        permission = self.permissions.get(permission_id)
        if permission is None or permission.org_id != org_id:
            raise ApiError.not_found("AssetPermission")
        return permission

    def create_permission(self, org_id: str, data: dict[str, Any]) -> dict[str, Any]:
        now = self.assets.now()
        permission = FakePermission(str(uuid.uuid4()), org_id, "", now, now + PERMISSION_VALIDITY)
        self._write(permission, data, creating=True)
        self.permissions[permission.id] = permission
        return self.permission_json(permission, detail=True)

    def update_permission(self, permission: FakePermission, data: dict[str, Any]) -> dict[str, Any]:
        """A partial update; given relations replace the permission's (a many-to-many `set`)."""
        self._write(permission, data, creating=False)
        return self.permission_json(permission, detail=True)

    def forget_asset(self, asset_id: str) -> None:
        """A deleted asset leaves every permission's assets (the many-to-many rows go with it)."""
        for permission in self.permissions.values():
            permission.asset_ids = [i for i in permission.asset_ids if i != asset_id]

    def _write(self, permission: FakePermission, data: dict[str, Any], *, creating: bool) -> None:
        errors: dict[str, Any] = {}
        hosts = {i for i, h in self.assets.hosts.items() if h.org_id == permission.org_id}
        name = text(data, "name", errors, required=creating)
        user_ids = related_ids(data, "users", errors, known=self.users.keys())
        asset_ids = related_ids(data, "assets", errors, known=hosts)
        accounts = string_list(data, "accounts", errors)
        protocols = string_list(data, "protocols", errors)
        actions = actions_in(data, errors)
        is_active = boolean(data, "is_active", errors, default=permission.is_active)
        comment = text(data, "comment", errors, blank=True, max_length=1024)
        ApiError.raise_if(errors)
        if name is not None:
            others = (
                p
                for p in self.permissions.values()
                if p.org_id == permission.org_id and p.id != permission.id
            )
            if any(p.name == name for p in others):
                raise ApiError(400, {"name": [UNIQUE]})
            permission.name = name
        permission.user_ids = user_ids if "users" in data else permission.user_ids
        permission.asset_ids = asset_ids if "assets" in data else permission.asset_ids
        permission.accounts = accounts if accounts is not None else permission.accounts
        permission.protocols = protocols if protocols is not None else permission.protocols
        permission.actions = actions if actions is not None else permission.actions
        permission.is_active = is_active
        permission.comment = comment if comment is not None else permission.comment

    def permission_json(self, permission: FakePermission, *, detail: bool) -> dict[str, Any]:
        expired = permission.date_expired <= self.assets.now()
        answer: dict[str, Any] = {
            "id": permission.id,
            "name": permission.name,
            "accounts": permission.accounts,
            "protocols": permission.protocols,
            "actions": actions_json(permission.actions),
            "created_by": "Administrator",
            "date_start": jms_time(permission.date_start),
            "date_expired": jms_time(permission.date_expired),
            "is_active": permission.is_active,
            "is_expired": expired,
            "is_valid": permission.is_active and not expired,
            "comment": permission.comment,
            "from_ticket": False,
            "labels": [],
            **self.assets.org_fields(permission.org_id),
        }
        if not detail:
            return answer | {
                "users_amount": len(permission.user_ids),
                "user_groups_amount": 0,
                "assets_amount": len(permission.asset_ids),
                "nodes_amount": 0,
            }
        return answer | {
            "users": [{"id": i, "name": self.users[i].name} for i in permission.user_ids],
            "user_groups": [],
            "assets": [{"id": i, "name": self.assets.hosts[i].name} for i in permission.asset_ids],
            "nodes": [],
        }


def user_json(user: FakeUser) -> dict[str, Any]:
    role = (
        ("00000000-0000-0000-0000-000000000001", "SystemAdmin")
        if user.is_superuser
        else ("00000000-0000-0000-0000-000000000003", "User")
    )
    return {
        "id": user.id,
        "name": user.name,
        "username": user.username,
        "email": user.email,
        "is_active": user.is_active,
        "is_valid": user.is_active,
        "is_superuser": user.is_superuser,
        "source": {"value": "local", "label": "Database"},
        "system_roles": [{"id": role[0], "display_name": role[1]}],
        "org_roles": [
            {"id": "00000000-0000-0000-0000-000000000007", "display_name": "OrgUser", "name": "OrgUser"}
        ],
        "groups": [],
        "labels": [],
        "mfa_level": {"value": 0, "label": "Disable"},
    }
