"""Garbage collection, a leader job: nothing of RemoteGPU's outlives the environment it belongs to.

- Cluster objects labelled as an environment's (pod, service, ConfigMap, Secret, PVC) whose environment
  does not exist or is deleted are deleted; a stopped environment keeps its PVCs (stop keeps volumes) but not its pod.
- Claims whose environment is deleted (or gone from the table) are released, and so is the storage
  quota a deleted environment still holds (its volumes went with its other objects).
- The platform SSH key and the Jupyter token of an environment whose Secret was an orphan because the
  environment is deleted (a delete that crashed before its step finished) are deleted from the secrets
  store.
- Gateway connections (named `remotegpu-<environment id>`) whose environment does not exist or is neither
  provisioning nor running, and is not leased by a step right now, are deleted at the gateway, and its
  endpoints there are marked removed: a stop that failed, or a step killed between the gateway's create
  and the record, leaves nothing behind.
An environment that believes it runs but has no pod needs no collector: its running step observes the
pod on every resync and re-creates it.
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy import text

from remotegpu.core.capacity.release import release, release_storage
from remotegpu.core.cluster.driver import OwnedObjects
from remotegpu.core.environments.jupyter import forget_jupyter_token
from remotegpu.core.environments.states import AccessKind, Phase, sql_list
from remotegpu.core.gateways.gateway import GatewayUnavailableError
from remotegpu.core.platform import clock
from remotegpu.core.secrets.store import SecretsAccessDeniedError, SecretsUnavailableError
from remotegpu.reconciler.context import ReconcilerContext
from remotegpu.reconciler.leader import fence

log = logging.getLogger(__name__)

_LIVE_SQL = text(
    "SELECT id, phase, workspace_id, deleted_at IS NOT NULL AS deleted FROM environments WHERE id = ANY(:ids)"
)
_ORPHAN_CLAIMS_SQL = text(
    f"""
    SELECT DISTINCT a.environment_id FROM allocations a JOIN environments e ON e.id = a.environment_id
     WHERE a.released_at IS NULL
       AND (e.deleted_at IS NOT NULL OR e.phase IN ({sql_list(Phase.where(Phase.is_terminal))}))
       AND (e.lock_token IS NULL OR e.lock_expires_at < now())
    """
)
_ORPHAN_STORAGE_SQL = text(
    "SELECT id FROM environments WHERE deleted_at IS NOT NULL AND storage_bytes_held > 0"
)
# Phases in which an environment has no business owning a pod.
_PODLESS = Phase.where(lambda phase: not phase.may_own_pod())
# Phases in which an environment keeps its gateway connection (made when provisioning ends).
_CONNECTED = frozenset({Phase.PROVISIONING, Phase.RUNNING})
_CONNECTED_SQL = text(
    f"""
    SELECT id FROM environments
     WHERE id = ANY(:ids) AND deleted_at IS NULL
       AND (phase IN ({sql_list(_CONNECTED)}) OR (lock_token IS NOT NULL AND lock_expires_at >= :now))
    """
)
_ENDPOINTS_GONE_SQL = text(
    "UPDATE access_endpoints SET removed_at = :now"
    " WHERE environment_id = :id AND kind = :kind AND removed_at IS NULL"
)


def _forget_secrets(ctx: ReconcilerContext, workspace_id: uuid.UUID, environment: uuid.UUID) -> None:
    """Delete a deleted environment's platform key and Jupyter token from the store. A store that cannot
    answer now is not asked again (the orphan Secret that led here is gone): the log line names the
    environment for an operator."""
    try:
        if ctx.platform_keys is not None:
            ctx.platform_keys.delete(workspace_id, environment)
        if ctx.secrets is not None:
            forget_jupyter_token(ctx.secrets, workspace_id, environment)
    except (SecretsUnavailableError, SecretsAccessDeniedError) as error:
        log.warning("Environment secrets not deleted", extra={"env": str(environment), "error": str(error)})


def collect_garbage(ctx: ReconcilerContext) -> dict[str, int]:
    """One collection pass; returns how many objects and claims were cleaned."""
    cleaned = {"objects": 0, "claims": 0}
    if isinstance(ctx.cluster, OwnedObjects):
        owned = ctx.cluster.owned_objects()  # no session open during cluster calls
        ids = sorted({environment for _, _, _, environment in owned})
        with ctx.engine.connect() as connection:
            rows = connection.execute(_LIVE_SQL, {"ids": ids}).all()
        phases = {row.id: row.phase for row in rows if not row.deleted}
        deleted = {row.id: row.workspace_id for row in rows if row.deleted}
        for kind, namespace, name, environment in owned:
            phase = phases.get(environment)
            orphan = phase is None or (
                kind in {"pod", "service", "configmap", "secret"} and phase in _PODLESS
            )
            if orphan and ctx.cluster.delete_object(kind, namespace, name):
                cleaned["objects"] += 1
                log.info(
                    "Orphan deleted",
                    extra={"kind": kind, "object": f"{namespace}/{name}", "env": str(environment)},
                )
                if kind == "secret" and environment in deleted:
                    _forget_secrets(ctx, deleted[environment], environment)
    with ctx.engine.connect() as connection:
        holding = connection.execute(_ORPHAN_STORAGE_SQL).scalars().all()
    for environment in holding:
        # one transaction each: its quota locks come first (lock order), and only its own
        with ctx.engine.begin() as connection:
            release_storage(connection, environment)
            fence(connection, ctx.shard, ctx.epoch)
        log.info("Orphan storage released", extra={"env": str(environment)})
    cleaned["gateway_connections"] = sum(_collect_gateway(ctx, kind) for kind in _gateway_kinds(ctx))
    with ctx.engine.begin() as connection:
        for environment in connection.execute(_ORPHAN_CLAIMS_SQL).scalars().all():
            if release(connection, environment).released_anything:
                cleaned["claims"] += 1
                log.info("Orphan claims released", extra={"env": str(environment)})
        fence(connection, ctx.shard, ctx.epoch)
    return cleaned


def _gateway_kinds(ctx: ReconcilerContext) -> tuple[AccessKind, ...]:
    return ctx.gateways.kinds() if ctx.gateways is not None else ()


def _collect_gateway(ctx: ReconcilerContext, kind: AccessKind) -> int:
    """Delete the connections at gateway `kind` whose environment should have none; how many. A gateway
    that cannot answer is skipped until the next pass (logged)."""
    assert ctx.gateways is not None
    try:
        gateway = ctx.gateways.get(kind)
        # listed first, checked after: an environment that starts in between is seen as provisioning
        connected = gateway.connected_environments()
        with ctx.engine.connect() as connection:
            keep = set(
                connection.execute(_CONNECTED_SQL, {"ids": sorted(connected), "now": clock.now()})
                .scalars()
                .all()
            )
        removed = 0
        for environment in sorted(connected - keep):
            gateway.delete_connection(environment)
            with ctx.engine.begin() as connection:
                connection.execute(
                    _ENDPOINTS_GONE_SQL, {"id": environment, "kind": kind.value, "now": clock.now()}
                )
                fence(connection, ctx.shard, ctx.epoch)
            removed += 1
            log.info(
                "Orphan gateway connection deleted", extra={"gateway": str(kind), "env": str(environment)}
            )
        return removed
    except GatewayUnavailableError as error:
        ctx.gateways.forget(kind)
        log.warning("Gateway not collected this pass", extra={"gateway": str(kind), "error": str(error)})
        return 0
