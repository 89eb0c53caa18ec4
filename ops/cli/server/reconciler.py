"""`remotegpu reconciler`: one reconciler replica against the configured database and cluster."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Annotated

import typer

from remotegpu.ops.cli.consoles import console, err_console
from remotegpu.ops.cli.server.config import (
    ConfigOption,
    LogFormatOption,
    required_database_url,
    server_settings,
)


def reconciler(
    config: ConfigOption = None,
    log_format: LogFormatOption = None,
    identity: Annotated[str | None, typer.Option(help="Name of this replica (default: host-random).")] = None,
    kubeconfig: Annotated[
        Path | None,
        typer.Option(help="Cluster to drive (default: in-cluster config, else the in-memory cluster)."),
    ] = None,
) -> None:
    """Run one reconciler replica (leader or hot standby) until Ctrl-C."""
    from sqlalchemy.engine import make_url

    from remotegpu.core.cluster.kubernetes.client import in_cluster
    from remotegpu.core.cluster.kubernetes.cluster import KubernetesCluster
    from remotegpu.ops.ports import check_port_free
    from remotegpu.ops.reconciler_runner import driver_options, pull_credentials, running_reconciler
    from remotegpu.ops.reload import SettingsReloader
    from remotegpu.ops.stopping import stopped_by_signals, wait_for_stop

    with stopped_by_signals():
        settings = server_settings(config, log_format=log_format, default_format="json")
        url = required_database_url(settings)
        if settings.reconciler_metrics_port:
            check_port_free(
                settings.reconciler_metrics_host,
                settings.reconciler_metrics_port,
                port_flag="REMOTEGPU_RECONCILER_METRICS_PORT (0: any free port)",
                host_flag="REMOTEGPU_RECONCILER_METRICS_HOST",
            )
        pod = kubeconfig is None and in_cluster()
        driver = (
            KubernetesCluster.from_kubeconfig(
                str(kubeconfig) if kubeconfig else None,
                **driver_options(settings),
                registry_credentials=pull_credentials(settings, make_url(url)),
            )
            if kubeconfig or pod
            else None
        )
        where = (
            f"cluster of {kubeconfig}" if kubeconfig else "in-cluster config" if pod else "in-memory cluster"
        )
        with (
            running_reconciler(make_url(url), settings, driver, identity=identity) as replica,
            SettingsReloader(
                settings,
                replica.apply_settings,
                config_file=config,
                console=err_console,
                log_format_flag=log_format,
            ).watch(),
        ):
            # What start-up made (modules, engine, settings: some 100,000 objects) lives as long as the
            # process: out of the cyclic collector's sight, a full collection no longer walks it (60 ms
            # of a scheduling pass that met one, #25).
            gc.freeze()
            console.print(f"Reconciler {replica.identity} running ({where}). Press Ctrl-C to stop.")
            if replica.metrics_url is not None:
                console.print(f"Metrics: {replica.metrics_url}")
            wait_for_stop()
    console.print("Stopped.")
