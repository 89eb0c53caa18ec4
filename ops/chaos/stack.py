"""What `remotegpu chaos` runs and breaks: its own Postgres, a simulated cluster, reconciler replicas and
an API, each replica and the API a real `remotegpu` process, so a fault is what production would see.

The Postgres is a private embedded server in the run's folder — never the machine's shared one — so
restarting it is a fault like the others. The simulated cluster runs in this process, where its faults
(5xx answers, slow answers, nodes not ready) are switched directly.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from remotegpu.core.cluster.kubernetes.cluster import KubernetesCluster
from remotegpu.core.platform.db import make_engine
from remotegpu.ops.bootstrap import DEV_ADMIN_EMAIL, ensure_admin
from remotegpu.ops.chaos.churn import api_token
from remotegpu.ops.dev_prices import seed_demo_prices
from remotegpu.ops.migrate import upgrade
from remotegpu.ops.ports import bind
from remotegpu.ops.postgres import EmbeddedPostgres, ensure_database
from remotegpu.ops.reconciler_runner import sync_inventory_now
from remotegpu.ops.simcluster.cluster import NodeTemplate, SimulatedCluster

SETTINGS = {
    "REMOTEGPU_HEARTBEAT_SECONDS": "0.5",
    "REMOTEGPU_LEASE_SECONDS": "5",
    # two shards over the two replicas: each leads one, and a fault on either moves a shard
    "REMOTEGPU_RECONCILER_SHARDS": "2",
    "REMOTEGPU_RECONCILER_METRICS_PORT": "0",
    # generous for two loaded cores: a fault may hold a step up for several seconds
    "REMOTEGPU_PROVISIONING_DEADLINE_SECONDS": "300",
    "REMOTEGPU_STOPPING_DEADLINE_SECONDS": "300",
    "REMOTEGPU_BACKOFF_CAP_SECONDS": "4",
    "REMOTEGPU_METER_SECONDS": "2",
    "REMOTEGPU_METER_CLOSE_SECONDS": "0",
}


@dataclass
class Managed:
    """A `remotegpu` process the run owns (it may be killed, paused and started again)."""

    name: str
    args: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    _output: IO[bytes] | None = field(default=None, repr=False)

    def start(self, env: dict[str, str]) -> None:
        self._output = self.log.open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - our own CLI, arguments built here
            [sys.executable, "-m", "remotegpu.ops.cli", *self.args],
            stdout=self._output,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive and self.process is not None:
            with contextlib.suppress(ProcessLookupError):  # it ended since `alive` looked
                os.killpg(self.process.pid, signum)

    def stop(self, grace_s: float = 15) -> None:
        if self.process is None:
            return
        self.signal(signal.SIGCONT)  # a paused process cannot stop
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        if self._output is not None:
            self._output.close()


def _free_port() -> int:
    sock = bind("127.0.0.1", 0)
    try:
        return int(sock.getsockname()[1])
    finally:
        sock.close()


class ChaosStack:
    """Postgres, cluster, `replicas` reconcilers and one API in `folder`, until `close`."""

    def __init__(self, folder: Path, replicas: int = 2, nodes: int = 4) -> None:
        self.folder = folder
        self.postgres = EmbeddedPostgres(folder / "postgres")
        self.cluster = SimulatedCluster(
            NodeTemplate(count=nodes, gpus=8, model="H100", prefix="chaos-node"),
            start_delay=dt.timedelta(milliseconds=200),
        )
        self.kubeconfig = folder / "simcluster.kubeconfig"
        self.api_port = _free_port()
        self.replicas = [
            Managed(
                f"chaos-r{index}",
                [
                    "reconciler",
                    "--identity",
                    f"chaos-r{index}",
                    "--kubeconfig",
                    str(self.kubeconfig),
                    "--log-format",
                    "json",
                ],
                folder / f"chaos-r{index}.log",
            )
            for index in range(replicas)
        ]
        self.api = Managed(
            "api", ["api", "--port", str(self.api_port), "--log-format", "json"], folder / "api.log"
        )
        self.url: URL | None = None
        self.engine: Engine | None = None
        self.admin_password_file = folder / "admin-password"
        self.jwt_secret = secrets.token_urlsafe(48)
        self._admin_token: str | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self) -> dict[str, str]:
        assert self.url is not None
        inherited = {
            k: v for k, v in os.environ.items() if not k.startswith("REMOTEGPU_") and k != "DATABASE_URL"
        }
        return {
            **inherited,
            **SETTINGS,
            "DATABASE_URL": self.url.render_as_string(hide_password=False),
            "REMOTEGPU_JWT_SECRET": self.jwt_secret,
        }

    def start(self) -> None:
        self.url = ensure_database(self.postgres.start().set(database="remotegpu_chaos"))
        upgrade(self.url)
        self.engine = make_engine(self.url, pool_size=4, application_name="remotegpu-chaos")
        ensure_admin(self.engine, DEV_ADMIN_EMAIL, "admin", self.admin_password_file)
        seed_demo_prices(self.engine, "USD")  # running costs money, so spending limits bite
        self.cluster.start()
        self.cluster.write_kubeconfig(self.kubeconfig)
        sync_inventory_now(self.url, KubernetesCluster.from_kubeconfig(str(self.kubeconfig)))
        for replica in self.replicas:
            replica.start(self.env())
        self.api.start(self.env())
        self.wait_for_api()
        with self.admin_client():  # its token is minted now, before any fault
            pass

    def wait_for_api(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.api_url}/readyz", timeout=2).status_code == 200:
                    return
            if not self.api.alive:
                raise RuntimeError(f"the API exited; see {self.api.log}")
            time.sleep(0.2)
        raise RuntimeError(f"the API did not become ready; see {self.api.log}")

    @contextlib.contextmanager
    def admin_client(self) -> Iterator[httpx.Client]:
        """The platform admin, signed in to the API."""
        with httpx.Client(base_url=f"{self.api_url}/api/v1", timeout=15) as client:
            if self._admin_token is None:  # minted once: signing in at every fault would meet the limits
                password = self.admin_password_file.read_text().strip()
                self._admin_token = api_token(client, DEV_ADMIN_EMAIL, password)
            client.headers["Authorization"] = f"Bearer {self._admin_token}"
            yield client

    def leader(self) -> Managed | None:
        """The replica that leads shard 0 now (by the lock table), if any."""
        assert self.engine is not None
        with contextlib.suppress(Exception), self.engine.connect() as connection:
            identity = connection.execute(
                text("SELECT leader_id FROM shard_leaders WHERE shard = 0")
            ).scalar()
            return next(
                (replica for replica in self.replicas if replica.name == identity and replica.alive), None
            )
        return None

    def restart_postgres(self) -> None:
        """Stop the database server and start it again on the same data (every connection breaks)."""
        assert self.engine is not None
        self.engine.dispose()
        self.postgres.stop()
        self.postgres.start()

    def terminate_backends(self, application: str) -> int:
        """`pg_terminate_backend` of every connection whose application name starts with `application`."""
        assert self.engine is not None
        with self.engine.begin() as connection:
            return len(
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE application_name LIKE :name AND datname = current_database()"
                        " AND pid <> pg_backend_pid()"
                    ),
                    {"name": f"{application}%"},
                ).all()
            )

    def close(self) -> None:
        """Stop everything, each part even when stopping another failed (no process may outlive the run)."""
        with contextlib.ExitStack() as stopping:  # run in reverse: the API first, Postgres last
            stopping.callback(self.postgres.stop)
            if self.engine is not None:
                stopping.callback(self.engine.dispose)
            stopping.callback(self.cluster.stop)
            for replica in self.replicas:
                stopping.callback(replica.stop)
            stopping.callback(self.api.stop)
