"""The simulated cluster's DCGM exporter: what NVIDIA's dcgm-exporter would serve for its GPUs, at
`GET /dcgm/metrics` on the simulated API server's address.

The series and labels are the real exporter's (github.com/NVIDIA/dcgm-exporter: `etc/default-counters.csv`,
`internal/pkg/rendermetrics`, `internal/pkg/transformation/kubernetes.go`): `DCGM_FI_DEV_GPU_UTIL` (%),
`DCGM_FI_DEV_FB_USED` (MiB) and `DCGM_FI_DEV_POWER_USAGE` (W) per GPU, labelled `gpu`, `UUID`,
`pci_bus_id`, `device`, `modelName`, `Hostname` (released exporters; its main branch lowercased it to
`hostname` in May 2026) and the `DCGM_FI_DRIVER_VERSION` label; a GPU that a running pod holds also gets
that pod's `pod`, `namespace` and `container`, as the exporter's pod mapper adds them from the kubelet's
pod-resources API. Every GPU of every node is exported, idle ones without pod labels.

How busy a pod's GPUs are is set per pod by the annotation `remotegpu.io/sim-gpu-utilisation` (a
percentage, `kubectl annotate pod … remotegpu.io/sim-gpu-utilisation=87`, or
`SimulatedCluster.set_gpu_utilisation`); without it a pod's GPUs are at the cluster's default (0 %: a
`sleep infinity` container uses no GPU). Memory used and power follow the utilisation.
"""

from __future__ import annotations

from collections.abc import Iterable

from remotegpu.ops.simcluster.kubelets import ALLOCATED_GPUS, GPU, NODES, PODS, device_uuid
from remotegpu.ops.simcluster.store import Obj, Store

UTILISATION_ANNOTATION = "remotegpu.io/sim-gpu-utilisation"
DRIVER_VERSION = "550.54.15"
IDLE_WATTS, FULL_WATTS = 70.0, 700.0
"""An H100 SXM's power draw idle and at full load (its TDP)."""

_HELP = (
    ("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %)."),
    ("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB)."),
    ("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W)."),
)


def utilisation_of(pod: Obj, default: float) -> float:
    """The utilisation a pod's GPUs run at: its annotation (clamped to 0-100), else `default`."""
    value = (pod.get("metadata", {}).get("annotations") or {}).get(UTILISATION_ANNOTATION)
    try:
        return min(max(float(value), 0.0), 100.0) if value is not None else default
    except ValueError:
        return default


def render(store: Store, default_utilisation: float = 0.0) -> str:
    """The exporter's answer for every GPU of every node, in the Prometheus text format."""
    nodes, _ = store.list(NODES, None, lambda _n: True, shared=True)
    running, _ = store.list(PODS, None, lambda p: p.get("status", {}).get("phase") == "Running", shared=True)
    holders: dict[str, Obj] = {}
    for pod in running:
        for uuid in ((pod["metadata"].get("annotations") or {}).get(ALLOCATED_GPUS) or "").split(","):
            if uuid:
                holders[uuid] = pod
    samples: dict[str, list[str]] = {name: [] for name, _ in _HELP}
    for node in sorted(nodes, key=lambda n: str(n["metadata"]["name"])):
        for labels, holder in _gpus(node, holders):
            busy = utilisation_of(holder, default_utilisation) if holder is not None else 0.0
            memory = int(node["metadata"].get("labels", {}).get("nvidia.com/gpu.memory", "81920"))
            values = {
                "DCGM_FI_DEV_GPU_UTIL": f"{round(busy)}",
                "DCGM_FI_DEV_FB_USED": f"{int(memory * 0.9 * busy / 100) if holder is not None else 0}",
                "DCGM_FI_DEV_POWER_USAGE": f"{IDLE_WATTS + (FULL_WATTS - IDLE_WATTS) * busy / 100:.3f}",
            }
            for name, value in values.items():
                samples[name].append(f"{name}{{{labels}}} {value}")
    lines = []
    for name, text in _HELP:
        lines += [f"# HELP {name} {text}", f"# TYPE {name} gauge", *samples[name]]
    return "\n".join(lines) + "\n"


def _gpus(node: Obj, holders: dict[str, Obj]) -> Iterable[tuple[str, Obj | None]]:
    """Each GPU of `node`: its label set as the exporter writes it, and the pod holding it (if any)."""
    name = str(node["metadata"]["name"])
    model = node["metadata"].get("labels", {}).get("nvidia.com/gpu.product", "")
    for index in range(int(node.get("status", {}).get("capacity", {}).get(GPU, 0))):
        uuid = device_uuid(name, index)
        labels = [
            ("gpu", str(index)),
            ("UUID", uuid),
            ("pci_bus_id", f"00000000:{0x18 + index * 0x10:02X}:00.0"),
            ("device", f"nvidia{index}"),
            ("modelName", f"NVIDIA {model}"),
            ("Hostname", name),
            ("DCGM_FI_DRIVER_VERSION", DRIVER_VERSION),
        ]
        pod = holders.get(uuid)
        if pod is not None:
            labels += [
                ("container", _gpu_container(pod)),
                ("namespace", str(pod["metadata"].get("namespace", "default"))),
                ("pod", str(pod["metadata"]["name"])),
            ]
        yield ",".join(f'{key}="{value}"' for key, value in labels), pod


def _gpu_container(pod: Obj) -> str:
    """The container the GPUs were given to: the first that asks for them."""
    containers = pod.get("spec", {}).get("containers", [])
    for container in containers:
        resources = container.get("resources", {})
        if GPU in resources.get("limits", {}) or GPU in resources.get("requests", {}):
            return str(container["name"])
    return str(containers[0]["name"]) if containers else ""
