"""Publishing a node's GPU report as its annotations, through the Kubernetes API.

Least privilege: the agent reads its own node (`get`) and writes the annotations with a merge patch
(`patch`); nothing else. It writes only when the report changed, so a large cluster's agents cost the
API server one read per node and interval.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client  # type: ignore[import-untyped,unused-ignore]

from remotegpu.core.cluster.kubernetes.client import bound, call_api, read_or_none
from remotegpu.core.inventory.gpu_report import GpuReading, report_annotations


class NodeNotFoundError(Exception):
    """The agent's node does not exist (a wrong `--node`, or NODE_NAME not set from spec.nodeName)."""


class NodeAnnotations:
    """Writes one node's GPU annotations."""

    def __init__(self, api_client: Any, node: str) -> None:
        self.node = node
        self._core = client.CoreV1Api(api_client)

    def publish(self, readings: list[GpuReading]) -> bool:
        """Make the node carry these readings; True when it had to be written."""
        found = read_or_none(lambda: self._core.read_node(self.node, _preload_content=False))
        if found is None:
            raise NodeNotFoundError(f'node "{self.node}" not found')
        wanted = report_annotations(readings)
        current = found.get("metadata", {}).get("annotations") or {}
        if all(current.get(key) == value for key, value in wanted.items()):
            return False
        call_api(
            bound(
                self._core.patch_node,
                self.node,
                {"metadata": {"annotations": wanted}},
                _preload_content=False,
            )
        )
        return True
