"""The agent's loop: read the GPUs, publish them when they changed, wait for XID errors, again.

It runs until `stop` is set (the command sets it from SIGINT or SIGTERM) and always closes NVML on the
way out. A Kubernetes API that does not answer is logged and retried on the next round: the GPUs keep
their last published state meanwhile, and the agent never exits for it (a DaemonSet restart would not
help). A node that does not exist is an error: the agent was deployed wrong.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from remotegpu.core.cluster.driver import ClusterUnavailableError
from remotegpu.core.inventory.gpu_report import GpuReading
from remotegpu.ops.agent.nvml_reader import NvmlReader
from remotegpu.ops.agent.publisher import NodeAnnotations

_log = logging.getLogger(__name__)


def run_agent(
    reader: NvmlReader,
    publisher: NodeAnnotations,
    stop: threading.Event,
    *,
    interval_s: float = 10.0,
    on_round: Callable[[list[GpuReading], bool], None] | None = None,
) -> None:
    """Publish the node's GPUs every `interval_s` (at once after an XID error) until `stop` is set."""
    reader.open()
    try:
        while not stop.is_set():
            readings = reader.read()
            try:
                written = publisher.publish(readings)
            except ClusterUnavailableError as error:
                _log.warning(
                    "GPU report not published; retrying", extra={"node": publisher.node, "error": str(error)}
                )
                written = False
            if written:
                unhealthy = [r.uuid for r in readings if not r.healthy]
                _log.info(
                    "GPU report published",
                    extra={"node": publisher.node, "gpus": len(readings), "unhealthy": unhealthy},
                )
            if on_round is not None:
                on_round(readings, written)
            reader.wait_for_errors(interval_s, stop)
    finally:
        reader.close()
