"""The gateway part of a step: publish a running environment's SSH through its gateway, withdraw it on stop.

Publishing happens after the pod runs and before the environment is reported running, so a user who sees
it running finds its connection. The connection is found again by its name, so a step killed after the
gateway made it and before `apply` recorded it makes no second one. Withdrawing happens before the phase
moves on, for every gateway the environment has a recorded endpoint at; a connection that was made but
never recorded is the garbage collector's (it removes connections of environments that do not run).
A gateway that cannot answer raises `GatewayUnavailableError`, which the step turns into a retry.
"""

from __future__ import annotations

import logging

from remotegpu.core.environments.states import PortPurpose
from remotegpu.core.gateways.gateway import GatewayConnection, GatewayTarget, GatewayUnavailableError
from remotegpu.core.gateways.targets import gateway_plan
from remotegpu.core.secrets.store import SecretsUnavailableError
from remotegpu.reconciler.context import ReconcilerContext
from remotegpu.reconciler.environments.leases import EnvironmentState

log = logging.getLogger(__name__)

CONTAINER_USER = "root"
"""The account the access image's sshd logs gateways in as (the direct SSH command uses it too)."""


def publish(ctx: ReconcilerContext, env: EnvironmentState) -> GatewayConnection | None:
    """Create or find the environment's connection at its gateway; None when it has no SSH or uses
    direct access only. Reads the plan in one short query; no session is held during the gateway's calls."""
    if ctx.gateways is None or "ssh" not in env.spec.access:
        return None
    ssh = next((port for port in env.ports if port.purpose is PortPurpose.SSH), None)
    if ssh is None:
        return None
    with ctx.engine.connect() as connection:
        plan = gateway_plan(connection, ctx.settings, env.id)
    if plan is None:
        return None
    if ctx.platform_keys is None:
        raise SecretsUnavailableError(
            "no secrets store for the platform key a gateway logs in with: set secrets_key"
            " (`remotegpu secrets generate-key`) or secrets_backend = vault"
        )
    target = GatewayTarget(
        environment_id=env.id,
        environment_name=env.name,
        workspace_id=env.workspace_id,
        hostname=plan.address,
        port=ssh.host_port,
        username=CONTAINER_USER,
        private_key=ctx.platform_keys.private_key(env.workspace_id, env.id),
        users=plan.users,
    )
    gateway = ctx.gateways.get(plan.kind)
    try:
        return gateway.ensure_connection(target)
    except GatewayUnavailableError:
        ctx.gateways.forget(plan.kind)  # the next attempt reads the admin login again
        raise


def withdraw(ctx: ReconcilerContext, env: EnvironmentState, *, best_effort: bool = False) -> bool:
    """Delete the environment's connections at every gateway it has a recorded endpoint at; whether it
    had any. `best_effort` (the environment fails anyway): an error is logged, the collector finishes."""
    if not env.gateway_kinds:
        return False
    if ctx.gateways is None:
        # the deployment dropped its gateways: nothing can reach them; the endpoints are marked removed
        return True
    for kind in env.gateway_kinds:
        try:
            ctx.gateways.get(kind).delete_connection(env.id)
        except GatewayUnavailableError as error:
            ctx.gateways.forget(kind)
            if not best_effort:
                raise
            log.warning(
                "Gateway connection left to the collector", extra={"env": str(env.id), "error": str(error)}
            )
    return True
