"""The GPU report a node carries: what the host agent read through NVML, as node annotations.

The agent (`remotegpu agent`, a DaemonSet) writes two annotations on its node; inventory sync reads them
(`core.cluster.kubernetes.nodes.observed_node`), and the simulated cluster's nodes carry the same:

- `remotegpu.io/gpus`: a JSON list, one entry per GPU NVML sees, in NVML index order:
  `{"index", "uuid", "model", "memory_mib", "healthy", "problems"}`; `problems` lists why a GPU is not
  healthy (XID errors, uncorrected ECC errors, hardware throttling) or, for a healthy one, what is worth
  knowing (software throttling).
- `remotegpu.io/gpu-uuids`: the same UUIDs comma-separated (what nodes reported before the agent).

With a report, the node's GPUs are the report's: one missing from it is lost, one marked unhealthy
leaves the pool with the reason `NVML: <problems>`, and only that reason is cleared when the agent
reports the GPU healthy again (an admin's own mark stays). Parsing is lenient about extra fields and
strict about the ones it uses: a malformed report counts as no report, never as zero GPUs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import msgspec

GPU_REPORT_ANNOTATION = "remotegpu.io/gpus"
GPU_UUIDS_ANNOTATION = "remotegpu.io/gpu-uuids"
"""Device UUIDs of a node's GPUs, comma-separated, where the node reports them."""
HEALTH_REASON_PREFIX = "NVML: "
"""Prefix of a GPU's health reason when the agent's report made it unhealthy."""


@dataclass(frozen=True)
class GpuReading:
    """One GPU as NVML describes it."""

    index: int
    uuid: str
    model: str
    memory_mib: int
    healthy: bool = True
    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def health_reason(self) -> str | None:
        """The reason inventory sync records for an unhealthy GPU; None for a healthy one."""
        return None if self.healthy else HEALTH_REASON_PREFIX + "; ".join(self.problems or ("unhealthy",))


def report_annotations(readings: list[GpuReading]) -> dict[str, str]:
    """The annotations a node carries for these readings."""
    report = [
        {
            "index": r.index,
            "uuid": r.uuid,
            "model": r.model,
            "memory_mib": r.memory_mib,
            "healthy": r.healthy,
            "problems": list(r.problems),
        }
        for r in readings
    ]
    return {
        GPU_REPORT_ANNOTATION: json.dumps(report, separators=(",", ":")),
        GPU_UUIDS_ANNOTATION: ",".join(r.uuid for r in readings),
    }


def readings_from_annotations(annotations: dict[str, Any]) -> list[GpuReading] | None:
    """The report of a node's annotations; None when it has none or it cannot be read."""
    raw = annotations.get(GPU_REPORT_ANNOTATION)
    if not isinstance(raw, str):
        return None
    try:
        entries = msgspec.json.decode(raw)
        return [
            GpuReading(
                index=int(e["index"]),
                uuid=str(e["uuid"]),
                model=str(e["model"]),
                memory_mib=int(e["memory_mib"]),
                healthy=bool(e["healthy"]),
                problems=tuple(str(p) for p in e.get("problems", [])),
            )
            for e in entries
        ]
    except (ValueError, TypeError, KeyError, msgspec.DecodeError):
        return None


def product_label(model: str) -> str:
    """NVML's product name as GPU feature discovery writes it in `nvidia.com/gpu.product`
    ("NVIDIA H100 80GB HBM3" → "NVIDIA-H100-80GB-HBM3"), so both name a model alike."""
    return "-".join(model.split())
