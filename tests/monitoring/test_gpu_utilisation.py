"""GPU utilisation with a real Prometheus (Debian's) scraping the simulated cluster's DCGM exporter twice:
once with `honor_labels` (the series keep `pod`/`namespace`) and once without, from a target that
carries the exporter's own `pod` and `namespace` as Kubernetes service discovery gives them (the series
get `exported_pod`/`exported_namespace`). Both shapes join to our environments; an idle environment is
stopped with `Idle` while a busy one keeps running; the API, `describe` and `top` show utilisation.

One simulated cluster and one Prometheus for the module; idle windows of a few seconds.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from remotegpu.api.app import create_app
from remotegpu.core.cluster.kubernetes.cluster import KubernetesCluster
from remotegpu.core.environments.states import DesiredState
from remotegpu.core.inventory.sync import sync_inventory
from remotegpu.core.monitoring.gpu_metrics import GPU_UTIL, GpuMetrics, PodNamespaces
from remotegpu.core.monitoring.idle import candidate, judge_idleness
from remotegpu.core.monitoring.prometheus import PrometheusClient, PrometheusUnavailableError
from remotegpu.core.monitoring.views import environment_metrics
from remotegpu.core.platform import clock
from remotegpu.core.platform.settings import Settings
from remotegpu.ops.api_server import running_api
from remotegpu.ops.cli.app import app as cli
from remotegpu.ops.simcluster.cluster import NodeTemplate, SimulatedCluster
from remotegpu.ops.simcluster.kubelets import PODS
from remotegpu.ops.simcluster.server import DCGM_PATH
from remotegpu.policies.idle import IdleState
from remotegpu.reconciler.context import SimulatedCrashError
from remotegpu.reconciler.loop import Reconciler
from remotegpu.reconciler.policies import policy_tick
from remotegpu.tests.polling import poll_until
from remotegpu.tests.prometheus_world import Prometheus, ScrapeJob, running_prometheus
from remotegpu.tests.reconciler.test_kill_points import KillOnce

HONOURED = 'job="dcgm-honoured"'
RENAMED = 'job="dcgm-renamed"'
PASSWORD = "correct horse battery"
SCALE = 0.05
"""Idle windows at a twentieth: a spec's `1m` is 3 s."""
JWT_SECRET = "remotegpu-monitoring-tests-signing-key-48-chars!"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatedCluster]:
    with SimulatedCluster(
        NodeTemplate(count=2, gpus=4, model="H100"), start_delay=dt.timedelta(milliseconds=50)
    ) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def prometheus(sim: SimulatedCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    target = sim.url.removeprefix("http://")
    jobs = [
        ScrapeJob("dcgm-honoured", [target], DCGM_PATH, honor_labels=True),
        ScrapeJob(
            "dcgm-renamed",
            [target],
            DCGM_PATH,
            labels={"pod": "nvidia-dcgm-exporter-x7k2p", "namespace": "gpu-operator"},
        ),
    ]
    with running_prometheus(tmp_path_factory.mktemp("prometheus"), jobs) as running:
        running.wait_for(f"up{{{HONOURED}}} == 1")
        running.wait_for(f"up{{{RENAMED}}} == 1")
        yield running


@dataclass
class Stack:
    engine: Engine
    sim: SimulatedCluster
    reconciler: Reconciler
    prometheus: Prometheus

    def converge(self, env: uuid.UUID, phase: str, timeout_s: float = 20) -> None:
        def reached() -> str:
            self.reconciler.run_until_idle()
            return str(self.column(env, "phase"))

        poll_until(reached, timeout_s, f"{env} to be {phase}", until=lambda p: p == phase, interval_s=0.05)

    def column(self, env: uuid.UUID, name: str) -> Any:
        with self.engine.connect() as connection:
            value = connection.execute(text(f"SELECT {name} FROM environments WHERE id = :e"), {"e": env})
            return value.scalar_one()


def _settings(prometheus: Prometheus, **more: Any) -> Settings:
    return Settings(
        prometheus_url=prometheus.url,
        dcgm_selector=HONOURED,
        idle_step_seconds=1,
        idle_time_scale=SCALE,
        jwt_secret=JWT_SECRET,
        **more,
    )


@pytest.fixture
def stack(
    engine: Engine,
    database_url: URL,
    sessions: sessionmaker[Session],
    sim: SimulatedCluster,
    prometheus: Prometheus,
    tmp_path: Path,
) -> Iterator[Stack]:
    """A reconciler on the module's simulated cluster reading GPU utilisation from its Prometheus; the
    cluster's pods are removed at the end (the database is emptied by `sessions`)."""
    driver = KubernetesCluster.from_kubeconfig(str(sim.write_kubeconfig(tmp_path / "kubeconfig")))
    with engine.begin() as connection:
        sync_inventory(connection, driver.list_nodes())
    reconciler = Reconciler(database_url, driver, _settings(prometheus), identity="idle", listen=False)
    try:
        yield Stack(engine, sim, reconciler, prometheus)
    finally:
        reconciler.close()
        sim.set_default_gpu_utilisation(0)
        pods, _ = sim.store.list(PODS, None, lambda _p: True)
        for pod in pods:
            sim.store.delete(PODS, pod["metadata"].get("namespace"), pod["metadata"]["name"])


@dataclass
class User:
    http: httpx.Client
    token: str
    workspace: str


@pytest.fixture
def api(stack: Stack, engine: Engine) -> Iterator[str]:
    """The API reading the module's Prometheus."""
    with running_api(create_app(_settings(stack.prometheus), engine)) as url:
        yield url


@pytest.fixture
def user(api: str) -> Iterator[User]:
    """A user signed in through the API, with a workspace of their own and an API token for the CLI."""
    with signed_up(api) as made:
        yield made


@contextlib.contextmanager
def signed_up(api: str) -> Iterator[User]:
    with httpx.Client(base_url=f"{api}/api/v1", timeout=30) as http:
        name = f"u{uuid.uuid4().hex[:8]}"
        email = f"{name}@example.org"
        assert http.post(
            "/auth/register", json={"email": email, "username": name, "password": PASSWORD}
        ).is_success
        login = http.post("/auth/login", json={"email": email, "password": PASSWORD}).json()
        http.headers["Authorization"] = f"Bearer {login['access_token']}"
        assert http.post("/workspaces", json={"name": f"ws-{name}"}).status_code == 201
        token = http.post("/auth/tokens", json={"name": "cli"}).json()["token"]
        yield User(http, token, f"ws-{name}")


def _spec(name: str, workspace: str, **policies: str) -> dict[str, Any]:
    document: dict[str, Any] = {
        "kind": "environment",
        "name": name,
        "workspace": workspace,
        "image": "nvcr.io/nvidia/pytorch:24.05-py3",
        "command": ["sleep", "infinity"],
        "resources": {"gpus": {"count": 1, "model": "H100"}, "cpu": 2, "memory": "8Gi"},
    }
    if policies:
        document["policies"] = policies
    return document


def _create(user: User, name: str, **policies: str) -> uuid.UUID:
    made = user.http.post("/environments", json=_spec(name, user.workspace, **policies))
    assert made.status_code == 201, made.text
    return uuid.UUID(made.json()["environment"]["id"])


def _workspace_of(stack: Stack, env: uuid.UUID) -> uuid.UUID:
    return uuid.UUID(str(stack.column(env, "workspace_id")))


def _cli(api: str, user: User, tmp_path: Path, *args: str) -> Any:
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("REMOTEGPU_")}
    env |= {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "COLUMNS": "250"}
    env |= {"REMOTEGPU_SERVER_URL": api, "REMOTEGPU_TOKEN": user.token}
    return CliRunner().invoke(cli, list(args), env=env)


def test_an_idle_environment_is_stopped_for_idling_and_a_busy_one_keeps_running(
    stack: Stack, user: User
) -> None:
    stack.sim.set_default_gpu_utilisation(80)  # both busy until the idle one is told otherwise
    idle = _create(user, "idle", idle_stop_after="1m")
    busy = _create(user, "busy", idle_stop_after="1m")
    stack.converge(idle, "running")
    stack.converge(busy, "running")
    stack.sim.set_gpu_utilisation(f"env-{idle}", 0)

    # killed right after the stop is written: the next run finds it done and writes nothing twice
    stack.reconciler.ctx.kill_point = KillOnce("policy-stopped")

    def stopped_for_idling() -> bool:
        try:
            stopped = policy_tick(stack.reconciler.ctx).stopped
        except SimulatedCrashError:
            return True
        assert busy not in stopped, "a busy environment is never stopped for idling"
        return False

    poll_until(stopped_for_idling, 30, "the idle environment to be stopped", interval_s=0.5)
    assert stack.column(idle, "desired_state") == DesiredState.STOPPED
    assert policy_tick(stack.reconciler.ctx).stopped == []
    assert stack.column(busy, "desired_state") == DesiredState.RUNNING
    stack.converge(idle, "stopped")
    with stack.engine.connect() as connection:
        ((kind, reason, message),) = connection.execute(
            text("SELECT kind, reason, message FROM events WHERE environment_id = :e AND reason = 'Idle'"),
            {"e": idle},
        )
    assert (kind, reason) == ("policy", "Idle")
    assert "below 5% utilisation for 3s (policies.idle_stop_after)" in message
    conditions = stack.column(idle, "conditions")
    assert [c["reason"] for c in conditions if c["type"] == "PolicyStopped"] == ["Idle"]
    assert policy_tick(stack.reconciler.ctx).stopped == [], "the busy one still runs"
    assert stack.column(busy, "phase") == "running"


def test_the_workspace_default_idle_window_applies_when_the_spec_has_none(
    stack: Stack, user: User, api: str, tmp_path: Path
) -> None:
    env = _create(user, "defaulted")
    stack.converge(env, "running")
    assert policy_tick(stack.reconciler.ctx).stopped == [], "no window: never stopped for idling"
    changed = _cli(
        api, user, tmp_path, "workspaces", "settings", "--idle-stop-minutes", "1", "-w", user.workspace
    )
    assert changed.exit_code == 0, changed.output
    assert re.search(r"default_idle_stop_minutes +1 ", changed.output)

    stopped = poll_until(
        lambda: policy_tick(stack.reconciler.ctx).stopped, 30, "the idle stop", interval_s=0.5
    )
    assert stopped == [env]
    with stack.engine.connect() as connection:
        message = connection.execute(
            text("SELECT message FROM events WHERE environment_id = :e AND reason = 'Idle'"), {"e": env}
        ).scalar_one()
    assert "for 3s (the workspace's default_idle_stop_minutes)" in message


def test_both_label_shapes_join_to_the_environment_and_other_namespaces_do_not(
    stack: Stack, user: User, prometheus: Prometheus
) -> None:
    env = _create(user, "shapes")
    stack.converge(env, "running")
    stack.sim.set_gpu_utilisation(f"env-{env}", 42)
    renamed = prometheus.wait_for(f'{GPU_UTIL}{{{RENAMED},exported_pod="env-{env}"}} == 42', timeout_s=15)
    assert renamed[0]["metric"]["pod"] == "nvidia-dcgm-exporter-x7k2p", "the target's own pod label"
    assert renamed[0]["metric"]["exported_namespace"] == "default"
    honoured = prometheus.wait_for(f'{GPU_UTIL}{{{HONOURED},pod="env-{env}"}} == 42', timeout_s=15)
    assert "exported_pod" not in honoured[0]["metric"]

    workspace = _workspace_of(stack, env)
    client = PrometheusClient(prometheus.url)
    try:
        for selector in (HONOURED, RENAMED):
            (gpu,) = GpuMetrics(client, PodNamespaces(), selector).latest({env: workspace})[env]
            assert gpu.latest(GPU_UTIL) == 42, selector
            assert gpu.uuid.startswith("GPU-")
            assert gpu.model == "NVIDIA H100"
        elsewhere = GpuMetrics(client, PodNamespaces("other-namespace"), HONOURED)
        assert elsewhere.latest({env: workspace}) == {}, "a pod of that name elsewhere does not count"

        # no series at all: no data, no stop, and a sentence that says so
        nothing = GpuMetrics(client, PodNamespaces(), 'job="not-scraped"')
        long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        waiting = candidate(env, workspace, 1, "1m", None, long_ago, SCALE)
        assert waiting is not None
        verdict = judge_idleness(
            nothing, [waiting], now=dt.datetime.now(dt.UTC), step=dt.timedelta(seconds=1), threshold=5
        )[env]
        assert verdict.state is IdleState.NO_DATA
        assert "no utilisation data for 1 of its 1 GPUs" in verdict.message
    finally:
        client.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_what_is_not_a_good_answer_from_prometheus_is_one_error_that_says_why(
    prometheus: Prometheus, sim: SimulatedCluster
) -> None:
    with contextlib.closing(PrometheusClient(prometheus.url)) as client:
        with pytest.raises(
            PrometheusUnavailableError, match=r"HTTP 400: bad_data: .*a bug in RemoteGPU's query"
        ):
            client.query("sum(")
        assert client.ready() == "Prometheus Server is Ready."
    with (
        contextlib.closing(PrometheusClient(sim.url)) as not_prometheus,
        pytest.raises(PrometheusUnavailableError, match=r"without a Prometheus body \(is prometheus_url"),
    ):
        not_prometheus.query("up")


def test_prometheus_unavailable_stops_nothing_and_is_said_not_raised(stack: Stack, user: User) -> None:
    env = _create(user, "dark", idle_stop_after="1m")
    stack.converge(env, "running")
    down = f"http://127.0.0.1:{_closed_port()}"
    stack.reconciler.ctx.gpu_metrics = GpuMetrics(PrometheusClient(down, timeout_s=1), PodNamespaces())
    assert policy_tick(stack.reconciler.ctx).stopped == []
    with stack.engine.connect() as connection:
        row = connection.execute(
            text("SELECT id, workspace_id, phase, gpu_count, spec FROM environments WHERE id = :e"),
            {"e": env},
        ).one()
    shown = environment_metrics(
        stack.reconciler.ctx.gpu_metrics,
        row,
        None,
        span=dt.timedelta(hours=1),
        now=clock.now(),
        idle_step=dt.timedelta(seconds=1),
        threshold=5,
    )
    assert shown.monitoring.state == "unavailable"
    assert shown.monitoring.message is not None
    assert shown.monitoring.message.startswith(
        f"Prometheus unavailable: Prometheus at {down} cannot be reached"
    )
    assert shown.idle is not None
    assert shown.idle.state == "unknown"
    not_configured = environment_metrics(
        None,
        row,
        None,
        span=dt.timedelta(hours=1),
        now=clock.now(),
        idle_step=dt.timedelta(seconds=1),
        threshold=5,
    )
    assert not_configured.monitoring.state == "not configured"
    assert "set prometheus_url" in (not_configured.monitoring.message or "")


def test_the_api_describe_and_top_show_utilisation_per_gpu(
    stack: Stack, user: User, api: str, tmp_path: Path
) -> None:
    env = _create(user, "train", idle_stop_after="30m")
    stack.converge(env, "running")
    stack.sim.set_gpu_utilisation(f"env-{env}", 87)
    stack.prometheus.wait_for(f'{GPU_UTIL}{{{HONOURED},pod="env-{env}"}} == 87', timeout_s=15)

    answer = user.http.get(f"/environments/{env}/metrics", params={"range": "5m"})
    assert answer.status_code == 200, answer.text
    metrics = answer.json()
    assert metrics["monitoring"] == {"state": "ok", "message": None}
    (gpu,) = metrics["gpus"]
    assert gpu["utilisation_percent"] == 87
    assert gpu["memory_used_mib"] == int(81920 * 0.9 * 0.87)
    assert gpu["power_watts"] == pytest.approx(70 + 630 * 0.87)
    assert gpu["series"]["utilisation_percent"][-1][1] == 87
    assert metrics["idle"]["state"] == "too soon"
    assert metrics["idle"]["after"] == "1m30s", "30m at a twentieth"

    refused = user.http.get(f"/environments/{env}/metrics", params={"range": "soon"})
    assert refused.status_code == 422
    assert "range" in refused.text
    assert user.http.get(f"/environments/{uuid.uuid4()}/metrics").status_code == 404

    described = _cli(api, user, tmp_path, "describe", "env", "train")
    assert described.exit_code == 0, described.output
    assert "87% util" in described.output
    assert "Idle stop" in described.output
    assert "too soon" in described.output

    shown = _cli(api, user, tmp_path, "top")
    assert shown.exit_code == 0, shown.output
    line = next(line for line in shown.output.splitlines() if line.startswith("train"))
    assert "87%" in line
    assert user.workspace in line


def test_without_prometheus_the_route_and_top_say_how_to_turn_monitoring_on(
    engine: Engine, stack: Stack, tmp_path: Path
) -> None:
    with running_api(create_app(Settings(jwt_secret=JWT_SECRET), engine)) as url, signed_up(url) as user:
        answer = user.http.get("/environments/metrics")
        assert answer.status_code == 200, answer.text
        assert answer.json()["monitoring"]["state"] == "not configured"
        result = _cli(url, user, tmp_path, "top")
        assert result.exit_code == 1
        assert "set prometheus_url" in str(result.exception)
