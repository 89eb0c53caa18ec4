"""The accounts of a fake Jumpserver's hosts: the credentials Jumpserver logs in to an asset with, validated
and written as Jumpserver v3's serializers do.

Followed from jumpserver/jumpserver at tag v3.10.23: `apps/accounts/serializers/account/{base,account}.py`
(`secret_type` as `{value, label}`, the write-only `secret`, an `ssh_key` secret that does not load refused
with "private key invalid or passphrase error", `username` ignored on update, `asset` written as an object,
`name` defaulting to the username), `apps/accounts/models/account.py` (unique `(username, asset,
secret_type)` and `(name, asset)` as DRF's `UniqueTogetherValidator` words it; deleted with their asset),
`apps/accounts/filters.py` (`asset`, `username`, `secret_type`, `search`; there is no `name` filter, so a
`?name=` is ignored and lists them all).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from remotegpu.ops.fakes.jumpserver_assets import Assets
from remotegpu.ops.fakes.jumpserver_fields import (
    REQUIRED,
    ApiError,
    boolean,
    check_secret,
    choice,
    matches,
    text,
)

SECRET_TYPES = {
    "password": "Password",
    "ssh_key": "SSH key",
    "access_key": "Access key",
    "token": "Token",
    "api_key": "API key",
}


@dataclass
class FakeAccount:
    id: str
    org_id: str
    asset_id: str
    name: str
    username: str
    secret_type: str
    secret: str = field(repr=False)
    privileged: bool = False
    is_active: bool = True
    comment: str = ""
    version: int = 1
    """Raised on every change of the secret, as Jumpserver's secret history does."""


class Accounts:
    """The accounts of every host in `assets`; the server holds its lock around every call."""

    def __init__(self, assets: Assets) -> None:
        self.assets = assets
        self.accounts: dict[str, FakeAccount] = {}

    def forget_asset(self, asset_id: str) -> None:
        """A deleted asset takes its accounts with it (`on_delete=CASCADE`)."""
        for account_id in [a.id for a in self.accounts.values() if a.asset_id == asset_id]:
            del self.accounts[account_id]

    def list_accounts(self, org_id: str, query: dict[str, str]) -> list[dict[str, Any]]:
        found = [
            a
            for a in self.accounts.values()
            if a.org_id == org_id
            and matches(query, "id", a.id)
            and matches(query, "asset", a.asset_id)
            and matches(query, "asset_id", a.asset_id)
            and matches(query, "username", a.username)
            and matches(query, "secret_type", a.secret_type)
        ]
        if search := query.get("search", "").lower():
            found = [a for a in found if any(search in v.lower() for v in self._searched(a))]
        return [self.account_json(a) for a in found]

    def _searched(self, account: FakeAccount) -> tuple[str, ...]:
        host = self.assets.hosts[account.asset_id]
        return account.username, account.name, account.comment, host.name, host.address

    def account(self, org_id: str, account_id: str) -> FakeAccount:
        account = self.accounts.get(account_id)
        if account is None or account.org_id != org_id:
            raise ApiError.not_found("Account")
        return account

    def create_account(self, org_id: str, data: dict[str, Any]) -> dict[str, Any]:
        if not data.get("asset"):
            raise ApiError(
                400, {"asset": REQUIRED}
            )  # raised while the serializer is built: no list around it
        errors: dict[str, Any] = {}
        key = data["asset"].get("id") if isinstance(data["asset"], dict) else data["asset"]
        host = self.assets.hosts.get(str(key))
        if host is None or host.org_id != org_id:
            errors["asset"] = ["Asset not found"]
        username = text(data, "username", errors, blank=True) or ""
        name = text(data, "name", errors, blank=True)
        secret_type = choice(data, "secret_type", SECRET_TYPES, errors, default="password")
        secret = text(data, "secret", errors, blank=True, max_length=40960, trim=False) or ""
        privileged = boolean(data, "privileged", errors, default=False)
        is_active = boolean(data, "is_active", errors, default=True)
        comment = text(data, "comment", errors, blank=True, max_length=1024) or ""
        ApiError.raise_if(errors)
        assert host is not None
        siblings = [a for a in self.accounts.values() if a.asset_id == host.id]
        if name is None:
            name = (
                f"{username}_{uuid.uuid4().hex[:4]}"
                if any(a.name == username for a in siblings)
                else username
            )
        if any(a.username == username and a.secret_type == secret_type for a in siblings):
            raise ApiError(
                400, {"non_field_errors": ["The fields username, asset, secret_type must make a unique set."]}
            )
        if any(a.name == name for a in siblings):
            raise ApiError(400, {"non_field_errors": ["The fields name, asset must make a unique set."]})
        check_secret(secret_type, secret)
        account = FakeAccount(
            str(uuid.uuid4()),
            org_id,
            host.id,
            name,
            username,
            secret_type,
            secret,
            privileged,
            is_active,
            comment,
        )
        self.accounts[account.id] = account
        return self.account_json(account)

    def update_account(self, account: FakeAccount, data: dict[str, Any]) -> dict[str, Any]:
        """`username` cannot change (the serializer drops it); a new secret raises `version`."""
        errors: dict[str, Any] = {}
        name = text(data, "name", errors)
        secret_type = choice(data, "secret_type", SECRET_TYPES, errors, default=account.secret_type)
        secret = text(data, "secret", errors, blank=True, max_length=40960, trim=False)
        comment = text(data, "comment", errors, blank=True, max_length=1024)
        privileged = boolean(data, "privileged", errors, default=account.privileged)
        is_active = boolean(data, "is_active", errors, default=account.is_active)
        ApiError.raise_if(errors)
        if name is not None and any(
            a.asset_id == account.asset_id and a.name == name and a.id != account.id
            for a in self.accounts.values()
        ):
            raise ApiError(400, {"non_field_errors": ["The fields name, asset must make a unique set."]})
        if secret:
            check_secret(secret_type, secret)
            account.version += secret != account.secret
            account.secret = secret
        account.name = name if name is not None else account.name
        account.secret_type = secret_type
        account.comment = comment if comment is not None else account.comment
        account.privileged, account.is_active = privileged, is_active
        return self.account_json(account)

    def account_json(self, account: FakeAccount) -> dict[str, Any]:
        host = self.assets.hosts[account.asset_id]
        return {
            "id": account.id,
            "name": account.name,
            "username": account.username,
            "secret_type": {"value": account.secret_type, "label": SECRET_TYPES[account.secret_type]},
            "privileged": account.privileged,
            "is_active": account.is_active,
            "created_by": "Administrator",
            "comment": account.comment,
            "labels": [],
            "su_from": None,
            "asset": {
                "id": host.id,
                "name": host.name,
                "address": host.address,
                "type": {"value": host.platform.type, "label": host.platform.name},
                "category": {"value": "host", "label": "Host"},
                "platform": {"id": host.platform.id, "name": host.platform.name},
            },
            "version": account.version,
            "source": {"value": "local", "label": "Local"},
            "source_id": None,
            "connectivity": {"value": "-", "label": "Unknown"},
            "params": {},
            **self.assets.org_fields(account.org_id),
        }
