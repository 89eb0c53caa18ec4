"""`remotegpu dev`: everything RemoteGPU needs on one machine, started in order and stopped in reverse.

The database (the configured one, or an embedded Postgres) with the schema migrated, a simulated
Kubernetes cluster of GPU nodes served over HTTP (with a kubeconfig for `kubectl`), a reconciler (leader
of shard 0) driving it through the Kubernetes driver (the inventory comes from the cluster's nodes), and
the API, which reads logs through the same driver. A platform admin is created on first start, with its
password in a file readable only by the user; the token-signing key is kept beside it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
from sqlalchemy.engine import URL

from remotegpu.api.app import create_app
from remotegpu.core.cluster.kubernetes.cluster import KubernetesCluster
from remotegpu.core.platform.db import make_engine
from remotegpu.core.platform.settings import DevS3Choice, GatewayChoice, Settings
from remotegpu.ops.api_server import running_api
from remotegpu.ops.bootstrap import DEV_ADMIN_EMAIL, ensure_admin, persistent_secret
from remotegpu.ops.dev_gateways import prepare_dev_gateway
from remotegpu.ops.dev_lock import data_dir_lock
from remotegpu.ops.dev_prices import seed_demo_prices
from remotegpu.ops.dev_registry import RegistryChoice, prepare_dev_registry
from remotegpu.ops.dev_s3 import prepare_dev_s3
from remotegpu.ops.dev_secrets import prepare_dev_secrets
from remotegpu.ops.migrate import current_revision, upgrade
from remotegpu.ops.postgres import EmbeddedPostgres, ensure_database
from remotegpu.ops.reconciler_runner import (
    driver_options,
    pull_credentials,
    running_reconciler,
    sync_inventory_now,
    wait_for_leadership,
)
from remotegpu.ops.simcluster.cluster import NodeTemplate, SimulatedCluster

DEV_DATABASE = "remotegpu"


@dataclass(frozen=True)
class DevStack:
    """What `remotegpu dev` started, for printing and for tests."""

    database_url: URL
    embedded_data_dir: Path | None
    schema_revision: str | None
    reconciler: str = "not started"
    reconciler_metrics: str | None = None
    cluster: str = "not started"
    kubeconfig: Path | None = None
    api_url: str | None = None
    admin_password_file: Path | None = None
    secrets: str = "not configured"
    gateway: str = "direct"
    prices: str = "none"
    registry: str = "none"
    s3: str = "none"
    simulated_cluster: SimulatedCluster | None = None
    """The simulated cluster itself, for tests that inject its faults or write its pods' logs."""

    def describe(self) -> list[tuple[str, str]]:
        """(component, where) rows, secrets redacted."""
        where = self.database_url.render_as_string(hide_password=True)
        if self.embedded_data_dir is not None:
            where += f"  (embedded, data in {self.embedded_data_dir})"
        return [
            ("Postgres", where),
            ("Schema", f"migrated to revision {self.schema_revision}"),
            ("Cluster", self.cluster),
            ("kubectl", f"kubectl --kubeconfig {self.kubeconfig} get pods -o wide"),
            ("Reconciler", self.reconciler),
            ("Metrics", f"{self.api_url}/metrics (API), {self.reconciler_metrics} (reconciler)"),
            ("Secrets", self.secrets),
            ("Gateway", self.gateway),
            ("Prices", self.prices),
            ("Registry", self.registry),
            ("Datasets", self.s3),
            ("API", f"{self.api_url}/api/v1  (OpenAPI: {self.api_url}/api/v1/openapi)"),
            (
                "Admin login",
                f"remotegpu login --server {self.api_url} --email {DEV_ADMIN_EMAIL} --password-stdin"
                f" < {self.admin_password_file}",
            ),
        ]


@contextlib.contextmanager
def running_dev_stack(
    settings: Settings,
    gateway: GatewayChoice = "direct",
    registry: RegistryChoice = "none",
    s3: DevS3Choice = "none",
) -> Iterator[DevStack]:
    """Start the stack, yield what runs, and stop it again on exit (also on Ctrl-C). `gateway`: where SSH
    is also published (a contract fake of the product unless its address is set); `registry`: an image
    registry to sync the catalog from (Harbor's contract fake with demo content); `s3`: an S3 service
    for datasets (moto's server on loopback)."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(data_dir_lock(settings.data_dir))
        embedded_dir: Path | None = None
        if settings.database_url:
            url = ensure_database(settings.database_url)
        else:
            embedded_dir = (settings.data_dir / "postgres").resolve()
            server = stack.enter_context(EmbeddedPostgres(embedded_dir))
            url = ensure_database(server.url.set(database=DEV_DATABASE))
        upgrade(url)
        settings, secrets_where = prepare_dev_secrets(settings, stack)
        settings, gateway_where = prepare_dev_gateway(settings, gateway, url, stack)
        # ExternalIP 127.0.0.1: the SSH command `remotegpu access` prints names this machine
        template = NodeTemplate(
            count=4, gpus=8, model="H100", prefix="dev-node", external_address="127.0.0.1"
        )
        cluster = stack.enter_context(
            SimulatedCluster(
                template,
                start_delay=dt.timedelta(seconds=2),
                volumes=(settings.data_dir / "simcluster-volumes").resolve(),  # dataset syncs write here
            )
        )
        kubeconfig = cluster.write_kubeconfig((settings.data_dir / "simcluster.kubeconfig").resolve())
        driver = KubernetesCluster.from_kubeconfig(
            str(kubeconfig), **driver_options(settings), registry_credentials=pull_credentials(settings, url)
        )
        sync_inventory_now(url, driver)
        # any free port: a second dev stack or a `remotegpu reconciler` may hold the default one
        metrics_settings = msgspec.structs.replace(settings, reconciler_metrics_port=0)
        reconciler = stack.enter_context(running_reconciler(url, metrics_settings, driver))
        leading = wait_for_leadership(reconciler)
        engine = make_engine(
            url, pool_size=settings.db_pool_size, application_name="remotegpu-api", pre_ping=False
        )
        stack.callback(engine.dispose)
        jwt_secret = settings.jwt_secret or persistent_secret((settings.data_dir / "jwt-secret").resolve())
        password_file = (settings.data_dir / "admin-password").resolve()
        ensure_admin(engine, DEV_ADMIN_EMAIL, "admin", password_file)
        registry_where = prepare_dev_registry(settings, registry, url, DEV_ADMIN_EMAIL, stack)
        settings, s3_where = prepare_dev_s3(settings, s3, url, stack)
        prices = seed_demo_prices(engine, settings.currency)
        app = create_app(msgspec.structs.replace(settings, jwt_secret=jwt_secret), engine, logs=driver)
        api_url = stack.enter_context(running_api(app, settings.api_host, settings.api_port))
        epoch = reconciler.members[0].elector.epoch
        state = f"leader of shard 0 (epoch {epoch})" if leading else "standby (another replica leads)"
        yield DevStack(
            database_url=url,
            embedded_data_dir=embedded_dir,
            schema_revision=current_revision(url),
            reconciler=state,
            reconciler_metrics=reconciler.metrics_url,
            cluster=f"simulated, {template.count} nodes × {template.gpus} {template.model} at {cluster.url}",
            kubeconfig=kubeconfig,
            api_url=api_url,
            admin_password_file=password_file,
            secrets=secrets_where,
            gateway=gateway_where,
            prices=prices,
            registry=registry_where,
            s3=s3_where,
            simulated_cluster=cluster,
        )
