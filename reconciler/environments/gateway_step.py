"""The gateway part of a step: publish a running environment's SSH through its gateway, keep the
connection in step with who may use it, withdraw it on stop.

Publishing happens after the pod runs and before the environment is reported running, so a user who sees
it running finds its connection. The connection is found again by its name, so a step killed after the
gateway made it and before `apply` recorded it makes no second one. While it runs, every look re-reads
its plan (one short query) and compares it with what was last sent to the gateway (a digest kept in
memory, like the keys Secret's): a member removed, the workspace's admins no longer entitled, the host's
address changed or the workspace moved to another gateway reaches the gateway within one resync, and an
unchanged plan costs no gateway call. Withdrawing happens before the phase moves on, for every gateway
the environment has a recorded endpoint at; a connection made but never recorded is the garbage
collector's. A gateway that cannot answer raises `GatewayUnavailableError`, which the step turns into a
retry (or, for a running environment, a later look).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from remotegpu.core.environments.states import AccessKind, PortPurpose
from remotegpu.core.gateways.gateway import GatewayConnection, GatewayTarget, GatewayUnavailableError
from remotegpu.core.gateways.targets import GatewayPlan, gateway_plan
from remotegpu.core.secrets.store import SecretsUnavailableError
from remotegpu.reconciler.context import ReconcilerContext
from remotegpu.reconciler.environments.leases import EnvironmentState

log = logging.getLogger(__name__)

CONTAINER_USER = "root"
"""The account the access image's sshd logs gateways in as (the direct SSH command uses it too)."""


@dataclass(frozen=True)
class GatewayChange:
    """What a look at a running environment changed at its gateways, for `apply` to record."""

    connection: GatewayConnection | None = None
    withdrawn: tuple[AccessKind, ...] = ()


def publish(ctx: ReconcilerContext, env: EnvironmentState) -> GatewayConnection | None:
    """Create or find the environment's connection at its gateway; None when it has no SSH or uses
    direct access only. No session is held during the gateway's calls."""
    plan = _plan(ctx, env)
    return _ensure(ctx, env, plan) if plan is not None else None


def refresh(ctx: ReconcilerContext, env: EnvironmentState) -> GatewayChange:
    """Bring a running environment's gateway connections in line with its plan: withdraw those at a
    gateway it no longer uses, and re-send its connection when who may use it (or where it is) changed."""
    if ctx.gateways is None:
        return GatewayChange()
    plan = _plan(ctx, env)
    wanted = plan.kind if plan is not None else None
    stale = tuple(kind for kind in env.gateway_kinds if kind is not wanted)
    if stale:
        _delete(ctx, env, stale, best_effort=False)
    connection = None
    if plan is not None and (
        plan.kind not in env.gateway_kinds or _digest(ctx, env, plan) != _sent(ctx, env)
    ):
        connection = _ensure(ctx, env, plan)
    return GatewayChange(connection, stale)


def withdraw(
    ctx: ReconcilerContext, env: EnvironmentState, *, best_effort: bool = False
) -> tuple[AccessKind, ...]:
    """Delete the environment's connections at every gateway it has a recorded endpoint at; the kinds
    withdrawn. `best_effort` (the environment fails anyway): an error is logged, the collector finishes."""
    if not env.gateway_kinds:
        return ()
    if ctx.gateways is not None:  # else the deployment dropped its gateways: only the records go
        _delete(ctx, env, env.gateway_kinds, best_effort=best_effort)
    return env.gateway_kinds


def _plan(ctx: ReconcilerContext, env: EnvironmentState) -> GatewayPlan | None:
    if ctx.gateways is None or "ssh" not in env.spec.access or _ssh_port(env) is None:
        return None
    with ctx.engine.connect() as connection:
        return gateway_plan(connection, ctx.settings, env.id)


def _ssh_port(env: EnvironmentState) -> int | None:
    return next((port.host_port for port in env.ports if port.purpose is PortPurpose.SSH), None)


def _digest(ctx: ReconcilerContext, env: EnvironmentState, plan: GatewayPlan) -> str:
    """What the gateway was (or would be) sent, as a digest: the platform key by its public half (cached),
    so comparing costs no secrets-store read."""
    public = ctx.platform_keys.public_key(env.workspace_id, env.id) if ctx.platform_keys else ""
    users = ",".join(sorted(user.username for user in plan.users))
    text = f"{plan.kind}|{plan.address}|{_ssh_port(env)}|{CONTAINER_USER}|{users}|{public}"
    return hashlib.sha256(text.encode()).hexdigest()


def _sent(ctx: ReconcilerContext, env: EnvironmentState) -> str | None:
    assert ctx.gateways is not None
    return ctx.gateways.sent.get(env.id)


def _ensure(ctx: ReconcilerContext, env: EnvironmentState, plan: GatewayPlan) -> GatewayConnection:
    assert ctx.gateways is not None
    if ctx.platform_keys is None:
        raise SecretsUnavailableError(
            "no secrets store for the platform key a gateway logs in with: set secrets_key"
            " (`remotegpu secrets generate-key`) or secrets_backend = vault"
        )
    port = _ssh_port(env)
    assert port is not None, "a plan exists only for an environment with an SSH port"
    target = GatewayTarget(
        environment_id=env.id,
        environment_name=env.name,
        workspace_id=env.workspace_id,
        hostname=plan.address,
        port=port,
        username=CONTAINER_USER,
        private_key=ctx.platform_keys.private_key(env.workspace_id, env.id),
        users=plan.users,
    )
    try:
        made = ctx.gateways.get(plan.kind).ensure_connection(target)
    except GatewayUnavailableError:
        ctx.gateways.forget(plan.kind)  # the next attempt reads the admin login again
        raise
    ctx.gateways.sent[env.id] = _digest(ctx, env, plan)
    return made


def _delete(
    ctx: ReconcilerContext, env: EnvironmentState, kinds: tuple[AccessKind, ...], *, best_effort: bool
) -> None:
    assert ctx.gateways is not None
    ctx.gateways.sent.pop(env.id, None)
    for kind in kinds:
        try:
            ctx.gateways.get(kind).delete_connection(env.id)
        except GatewayUnavailableError as error:
            ctx.gateways.forget(kind)
            if not best_effort:
                raise
            log.warning(
                "Gateway connection left to the collector", extra={"env": str(env.id), "error": str(error)}
            )
