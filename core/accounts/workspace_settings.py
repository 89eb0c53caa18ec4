"""A workspace's settings: one typed struct, stored as the workspace's `settings` JSONB.

The struct is the one shape of the data: the API decodes into it (unknown fields refused), the column is
read back through `msgspec.convert`, and a key missing from an older row takes the struct's default, so
adding a setting needs no migration. Members read the settings; admins and owners change them, except
the spending limit, which only owners (and platform admins) set: it decides when everyone's
environments stop.

Settings in use:
- `admin_keys_in_member_environments`: the SSH keys of the workspace's admins and owners are also
  authorised in every member's environment (read by `core.accounts.ssh_keys.AUTHORIZED_KEYS_SQL`), and
  they may open its gateway connection (`core.gateways.targets`).
- `gateway`: the access gateway of the workspace's environments (None: the deployment's), where the
  deployment lets workspaces choose (`workspace_gateways`); read when an environment starts.
- `spending_limit`: a limit per billing period as a decimal string in the billing currency (None:
  none), read by `core.billing.budget`: a warning at 80 %, and at 100 % new environments wait and
  running ones are stopped (`reconciler.policies`).
- `home_volume_size`: a Kubernetes quantity (None: no home volumes). Each user gets one persistent
  volume of that size per workspace, made when their first environment there is provisioned and
  mounted at `/home/<username>` in every one of their environments there; it outlives environments and
  is billed as storage (`reconciler.environments.apply`, `core.datasets.homes`). A later change of the
  size applies to homes made after it.
- `default_idle_stop_minutes`: the idle window of environments whose spec has no
  `policies.idle_stop_after` (None: never), read by `core.monitoring.idle`: a running environment whose
  GPUs were all idle that long is stopped (`reconciler.policies`).
"""

from __future__ import annotations

import re
import uuid
from decimal import Decimal
from typing import Annotated, Literal

import msgspec
from sqlalchemy import Connection, text

from remotegpu.core.accounts.membership import WorkspaceAccess
from remotegpu.core.accounts.users import Principal
from remotegpu.core.platform.errors import InvalidInputError
from remotegpu.core.platform.events import record_mutation
from remotegpu.core.platform.quantities import parse_bytes
from remotegpu.policies.roles import Action

IdleMinutes = Annotated[int, msgspec.Meta(ge=1, le=525_600)]
GatewayName = Literal["direct", "guacamole", "jumpserver"]


class WorkspaceSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Every workspace setting with its default."""

    admin_keys_in_member_environments: bool = False
    """Whether workspace admins' and owners' SSH keys may log in to members' environments (and they may
    open members' gateway connections)."""
    gateway: GatewayName | None = None
    """How the workspace's environments are reached (None: the deployment's choice); changes apply to
    environments started after the change."""
    default_idle_stop_minutes: IdleMinutes | None = None
    """Stop a running environment whose GPUs were all idle this many minutes, unless its spec says
    otherwise (`policies.idle_stop_after`); None: never. Needs monitoring (`prometheus_url`)."""
    spending_limit: str | None = None
    """A decimal amount per billing period, e.g. "250.00" (None: no limit); owners set it."""
    home_volume_size: str | None = None
    """The size of each member's home volume, e.g. "50Gi" (None: no home volumes)."""


class WorkspaceSettingsUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Changes to the settings: only the fields given change (`null` clears an optional one)."""

    admin_keys_in_member_environments: bool | msgspec.UnsetType = msgspec.UNSET
    gateway: GatewayName | msgspec.UnsetType | None = msgspec.UNSET
    default_idle_stop_minutes: IdleMinutes | msgspec.UnsetType | None = msgspec.UNSET
    spending_limit: str | msgspec.UnsetType | None = msgspec.UNSET
    home_volume_size: str | msgspec.UnsetType | None = msgspec.UNSET


def get_workspace_settings(connection: Connection, access: WorkspaceAccess) -> WorkspaceSettings:
    """The settings of a workspace the caller belongs to (any role may read them)."""
    access.require(Action.READ)
    stored = connection.execute(
        text("SELECT settings FROM workspaces WHERE id = :id"), {"id": access.id}
    ).scalar_one()
    return msgspec.convert(stored or {}, WorkspaceSettings)


def update_workspace_settings(
    connection: Connection,
    principal: Principal,
    access: WorkspaceAccess,
    changes: WorkspaceSettingsUpdate,
    *,
    gateway_choices: tuple[str, ...] = (),
) -> WorkspaceSettings:
    """Apply `changes` (workspace admins and owners; the spending limit owners only); records which
    settings changed. Environments with SSH access get their `authorized_keys` rewritten at their next
    resync. `gateway_choices`: the gateways the deployment lets a workspace choose (none: the setting
    cannot be set)."""
    access.require(Action.UPDATE_WORKSPACE)
    if changes.spending_limit is not msgspec.UNSET:
        access.require(Action.SET_SPENDING_LIMIT)
    _check_gateway(changes.gateway, gateway_choices)
    given = {
        name: value
        for name in changes.__struct_fields__
        if (value := getattr(changes, name)) is not msgspec.UNSET
    }
    if isinstance(given.get("home_volume_size"), str):
        _check_home_size(given["home_volume_size"])
    if isinstance(given.get("spending_limit"), str):
        given["spending_limit"] = _decimal_amount(given["spending_limit"])
    stored = connection.execute(
        text("SELECT settings FROM workspaces WHERE id = :id FOR UPDATE"), {"id": access.id}
    ).scalar_one()
    merged = msgspec.structs.replace(msgspec.convert(stored or {}, WorkspaceSettings), **given)
    connection.execute(
        text("UPDATE workspaces SET settings = CAST(:settings AS jsonb), updated_at = now() WHERE id = :id"),
        {"id": access.id, "settings": msgspec.json.encode(merged).decode()},
    )
    record_mutation(
        connection,
        principal.user_id,
        "WorkspaceSettingsChanged",
        f"settings changed: {', '.join(sorted(given)) or 'none'}",
        workspace_id=access.id,
        data={"changed": sorted(given)},
    )
    return merged


def _check_gateway(choice: str | msgspec.UnsetType | None, choices: tuple[str, ...]) -> None:
    if choice is msgspec.UNSET or choice is None:
        return
    if not choices:
        raise InvalidInputError(
            "$.gateway",
            "this deployment uses one gateway for every workspace (its workspace_gateways setting is off):"
            " keep the deployment's (`--gateway default`; null in the API)",
        )
    if choice not in choices:
        raise InvalidInputError(
            "$.gateway", f"{choice} is not configured on this deployment; choose one of {', '.join(choices)}"
        )


MIN_HOME_BYTES = 1 << 30


def _check_home_size(value: str) -> None:
    try:
        size = parse_bytes(value)
    except ValueError as error:
        raise InvalidInputError("$.home_volume_size", str(error)) from None
    if size < MIN_HOME_BYTES:
        raise InvalidInputError("$.home_volume_size", f"a home volume is at least 1Gi, not {value}")


_AMOUNT = re.compile(r"^[0-9]{1,12}(\.[0-9]{1,2})?$")


def _decimal_amount(value: str) -> str:
    """A limit as plain digits with at most two decimals (no exponent, sign or other scripts' digits),
    stored as given: zero stops all spending, null removes the limit."""
    if not _AMOUNT.match(value.strip()):
        raise InvalidInputError(
            "$.spending_limit",
            'expected an amount of zero or more with at most two decimals, such as "250.00", or null for'
            " no limit",
        )
    return str(Decimal(value.strip()))


def settings_of(connection: Connection, workspace_id: uuid.UUID) -> WorkspaceSettings:
    """The settings of a workspace, for the platform's own use (no caller to check)."""
    stored = connection.execute(
        text("SELECT settings FROM workspaces WHERE id = :id"), {"id": workspace_id}
    ).scalar_one()
    return msgspec.convert(stored or {}, WorkspaceSettings)
