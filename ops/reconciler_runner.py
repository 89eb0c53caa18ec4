"""Running a reconciler replica in this process, against a Kubernetes cluster or the in-memory one."""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import URL

from remotegpu.core.cluster.driver import ClusterDriver
from remotegpu.core.cluster.kubernetes.cluster import KubernetesCluster
from remotegpu.core.cluster.memory import InMemoryCluster
from remotegpu.core.inventory.sync import sync_inventory
from remotegpu.core.platform.db import make_engine
from remotegpu.core.platform.errors import SettingsError
from remotegpu.core.platform.settings import Settings
from remotegpu.core.secrets.configured import open_secret_store
from remotegpu.core.secrets.registry_credentials import (
    CachedRegistryCredentials,
    import_registry_credentials_setting,
)
from remotegpu.reconciler.shards import ShardedReconciler, running_shards


def driver_options(settings: Settings) -> dict[str, Any]:
    """The Kubernetes driver's options, from the settings."""
    return {
        "namespace": settings.kubernetes_namespace,
        "namespace_per_workspace": settings.namespace_per_workspace,
        "storage_class": settings.storage_class,
        "access_image": settings.access_image,
        "gpu_binding": settings.gpu_binding,
    }


def pull_credentials(settings: Settings, url: URL) -> CachedRegistryCredentials | None:
    """What the reconciler's driver writes as image pull Secrets: the registry credentials in the
    secrets store, after the old `registry_credentials` setting is imported into it (once, when the store
    has none). None when no secrets store is configured and the setting is not set either."""
    if settings.secrets_backend == "builtin" and not settings.secrets_key:
        if settings.registry_credentials:
            raise SettingsError(
                "registry_credentials: kept in the secrets store now; set secrets_key (generate one with"
                " `remotegpu secrets generate-key`) so the setting can be imported, then remove it"
            )
        return None
    store = open_secret_store(settings, make_engine(url, pool_size=2, application_name="remotegpu-secrets"))
    import_registry_credentials_setting(settings, store)
    return CachedRegistryCredentials(store)


def sync_inventory_now(url: URL, driver: KubernetesCluster) -> int:
    """Register the cluster's nodes as hosts right away (the leader's job keeps them in sync after)."""
    engine = make_engine(url, pool_size=1)
    try:
        with engine.begin() as connection:
            return len(sync_inventory(connection, driver.list_nodes()))
    finally:
        engine.dispose()


def memory_cluster_for(url: URL, start_delay: dt.timedelta = dt.timedelta(seconds=2)) -> InMemoryCluster:
    """An in-memory cluster whose nodes are the database's hosts."""
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as connection:
            names = set(connection.execute(text("SELECT name FROM hosts WHERE removed_at IS NULL")).scalars())
    finally:
        engine.dispose()
    return InMemoryCluster(nodes=names, start_delay=start_delay)


@contextlib.contextmanager
def running_reconciler(
    url: URL, settings: Settings, cluster: ClusterDriver | None = None, identity: str | None = None
) -> Iterator[ShardedReconciler]:
    """This process's reconcilers (one per shard, leading its fair share) in a background thread,
    stopped (and resigned) on exit; they serve `/metrics` where `reconciler_metrics_port` says (the
    caller checked the port is free)."""
    reconciler = ShardedReconciler(url, cluster or memory_cluster_for(url), settings, identity=identity)
    if settings.reconciler_metrics_port is not None:
        reconciler.serve_metrics(settings.reconciler_metrics_host, settings.reconciler_metrics_port)
    with running_shards(reconciler):
        yield reconciler


def wait_for_leadership(reconciler: ShardedReconciler, timeout_s: float = 10.0) -> bool:
    """Wait until `reconciler` leads a shard (or the timeout passes)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if reconciler.is_leader:
            return True
        time.sleep(0.05)
    return False
