"""GPU utilisation per environment: NVIDIA's DCGM exporter's series in Prometheus, joined to our pods.

The exporter labels each GPU a pod holds with the pod's `pod`, `namespace` and `container`. Prometheus
keeps those names when the scrape sets `honor_labels: true`; otherwise, where the target carries labels
of the same name (Kubernetes service discovery gives it the exporter's own `pod` and `namespace`), it
renames the scraped ones `exported_pod` and `exported_namespace`. Both shapes are read: each query asks
for either label (`… or …`), and a series belongs to the pod its `exported_*` label names when it has
one, else to its plain label's. Our pods are named `env-<environment id>` (`workload_name`); a series
counts only when its namespace is the one the environment's objects live in, so a pod of that name
elsewhere cannot speak for it.

Every read is one query, whatever the number of environments: the API's page, `remotegpu top` and the
idle check each send one.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from remotegpu.core.cluster.driver import WORKSPACE_NAMESPACE_PREFIX
from remotegpu.core.monitoring.prometheus import PrometheusClient, Series
from remotegpu.core.platform.settings import Settings

GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"
"""GPU utilisation, % (gauge)."""
FB_USED = "DCGM_FI_DEV_FB_USED"
"""Framebuffer (GPU memory) used, MiB (gauge)."""
POWER_USAGE = "DCGM_FI_DEV_POWER_USAGE"
"""Power draw, W (gauge)."""
ALL_METRICS = (GPU_UTIL, FB_USED, POWER_USAGE)

_OUR_PODS = "env-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_POD = re.compile(f"^{_OUR_PODS}$")


@dataclass(frozen=True)
class PodNamespaces:
    """Where environments' pods live: one namespace, or one per workspace (`rgpu-ws-<id>`)."""

    namespace: str = "default"
    per_workspace: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> PodNamespaces:
        return cls(settings.kubernetes_namespace, settings.namespace_per_workspace)

    def of(self, workspace_id: uuid.UUID) -> str:
        """The namespace of a workspace's pods."""
        return f"{WORKSPACE_NAMESPACE_PREFIX}{workspace_id}" if self.per_workspace else self.namespace


@dataclass
class GpuSeries:
    """One GPU of one environment: its identity as the exporter reports it and each metric's points."""

    environment_id: uuid.UUID
    uuid: str
    gpu: str
    """The GPU's index on its node (the exporter's `gpu` label)."""
    model: str
    hostname: str
    points: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    """Metric name (or `value` for a computed expression) → (Unix time, value), oldest first."""

    def latest(self, metric: str) -> float | None:
        """The newest value of `metric`, if any."""
        points = self.points.get(metric)
        return points[-1][1] if points else None


class GpuMetrics:
    """The DCGM series of our environments' GPUs, read from one Prometheus."""

    def __init__(self, client: PrometheusClient, namespaces: PodNamespaces, selector: str = "") -> None:
        self.client = client
        self.namespaces = namespaces
        self.selector = selector

    @classmethod
    def from_settings(cls, settings: Settings) -> GpuMetrics | None:
        """The reader the settings configure; None when `prometheus_url` is not set."""
        if settings.prometheus_url is None:
            return None
        client = PrometheusClient(settings.prometheus_url, timeout_s=settings.prometheus_timeout_seconds)
        return cls(client, PodNamespaces.from_settings(settings), settings.dcgm_selector)

    def close(self) -> None:
        self.client.close()

    def expression(self, metrics: tuple[str, ...], pods: str = _OUR_PODS, over: str | None = None) -> str:
        """A PromQL expression for `metrics` of the pods matching the regex `pods`, in both label shapes;
        with `over` (a range such as `60s`), each point is the highest value over that range."""
        names = "|".join(metrics)
        shapes = []
        for label in ("pod", "exported_pod"):
            matchers = [f'__name__=~"{names}"', f'{label}=~"{pods}"']
            if self.selector:
                matchers.append(self.selector)
            selector = "{" + ",".join(matchers) + "}"
            shapes.append(f"max_over_time({selector}[{over}])" if over else selector)
        return " or ".join(shapes)

    def latest(self, environments: Mapping[uuid.UUID, uuid.UUID]) -> dict[uuid.UUID, list[GpuSeries]]:
        """The newest reading of every GPU of `environments` (environment id → workspace id), in one
        query; environments without series are left out."""
        if not environments:
            return {}
        # a page of environments names its pods (hex digits and dashes: literal in a regex)
        pods = "|".join(f"env-{e}" for e in sorted(environments)) if len(environments) <= 500 else _OUR_PODS
        answer = self.client.query(self.expression(ALL_METRICS, pods))
        return self.join(answer, environments)

    def over_range(
        self,
        environment_id: uuid.UUID,
        workspace_id: uuid.UUID,
        start: dt.datetime,
        end: dt.datetime,
        step: dt.timedelta,
    ) -> list[GpuSeries]:
        """The three metrics of one environment's GPUs every `step` from `start` to `end` (one query)."""
        pods = f"env-{environment_id}"  # hex digits and dashes: literal as a regex
        answer = self.client.query_range(self.expression(ALL_METRICS, pods), start, end, step)
        return self.join(answer, {environment_id: workspace_id}).get(environment_id, [])

    def peak_utilisation(
        self,
        environments: Mapping[uuid.UUID, uuid.UUID],
        start: dt.datetime,
        end: dt.datetime,
        step: dt.timedelta,
    ) -> dict[uuid.UUID, list[GpuSeries]]:
        """Every GPU's highest utilisation over each `step` from `start` to `end`, for all
        `environments` in one query (the idle check); points under the metric name GPU_UTIL."""
        if not environments:
            return {}
        over = f"{max(int(step.total_seconds()), 1)}s"
        answer = self.client.query_range(self.expression((GPU_UTIL,), over=over), start, end, step)
        return self.join(answer, environments, metric=GPU_UTIL)

    def join(
        self,
        answer: list[Series],
        environments: Mapping[uuid.UUID, uuid.UUID],
        metric: str | None = None,
    ) -> dict[uuid.UUID, list[GpuSeries]]:
        """The series of `answer` that belong to `environments`, per environment and GPU (the same GPU
        answered twice, by two scrape jobs or two Prometheus replicas, is merged)."""
        found: dict[uuid.UUID, dict[str, GpuSeries]] = {}
        for series in answer:
            labels = series.labels
            environment_id = _environment_of(labels)
            if environment_id is None or environment_id not in environments:
                continue
            if _label(labels, "namespace") != self.namespaces.of(environments[environment_id]):
                continue
            key = labels.get("UUID") or labels.get("uuid") or f"{labels.get('Hostname')}/{labels.get('gpu')}"
            gpu = found.setdefault(environment_id, {}).get(key)
            if gpu is None:
                gpu = GpuSeries(
                    environment_id,
                    key,
                    labels.get("gpu", ""),
                    labels.get("modelName", ""),
                    labels.get("Hostname") or labels.get("hostname", ""),
                )
                found[environment_id][key] = gpu
            name = metric or labels.get("__name__", "value")
            gpu.points[name] = sorted({*gpu.points.get(name, []), *series.points})
        return {
            environment_id: sorted(gpus.values(), key=lambda g: (g.hostname, _index(g.gpu), g.uuid))
            for environment_id, gpus in found.items()
        }


def _label(labels: Mapping[str, str], name: str) -> str | None:
    """The workload's `pod` or `namespace`: Prometheus's renamed `exported_<name>` when present."""
    return labels.get(f"exported_{name}", labels.get(name))


def _environment_of(labels: Mapping[str, str]) -> uuid.UUID | None:
    pod = _label(labels, "pod")
    if pod is None or not _POD.match(pod):
        return None
    return uuid.UUID(pod.removeprefix("env-"))


def _index(gpu: str) -> int:
    return int(gpu) if gpu.isdigit() else 1_000_000
