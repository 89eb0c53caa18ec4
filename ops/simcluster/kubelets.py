"""Simulated scheduler and kubelets: they move pods through their lives like a real cluster would.

- A pod without `spec.nodeName` is bound to the first Ready node (by name) with room for its GPU, CPU
  and memory requests; when none has room it stays Pending with a `FailedScheduling` event.
- A pod bound to a node (also one pinned by its creator) is admitted by that node's kubelet only if the
  node's `nvidia.com/gpu` capacity still covers it; otherwise it fails (`OutOfnvidia.com/gpu`), as a
  real kubelet's admission does. An admitted pod gets concrete devices, reported like the kubelet's
  pod-resources API would be, in the annotation `remotegpu.io/allocated-gpus`.
- After `start_delay` the pod runs (Ready), unless a fault says otherwise: image pull failure, crash
  loop, OOM kill. A node marked NotReady stops its heartbeats and its pods lose readiness.
- Pulls fail, as they would from a registry without the image, for images on the deny-list and for
  any whose repository or tag contains `does-not-exist` (so the error path can be tried by hand): the
  container waits in `ErrImagePull`, then `ImagePullBackOff`, and the pod stays Pending.
- A container that reads a Secret (`env[].valueFrom.secretKeyRef`) that does not exist does not start:
  it waits in `CreateContainerConfigError`, as a kubelet's does.
- Images without Jupyter: a container with a readiness probe (Jupyter environments have one) whose image
  is on the `no_jupyter` list or whose reference contains `nojupyter` runs but never becomes ready, with
  `Readiness probe failed` events, as the access entrypoint's marker file makes a real probe fail.
- A container's log is kept per pod; readers waiting for new lines (`logs -f`) are woken as it grows.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import heapq
import itertools
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from remotegpu.core.platform.quantities import parse_bytes, parse_cpu_millis
from remotegpu.ops.simcluster.store import BY_PATH, ApiError, Obj, Store, now_iso

PODS = BY_PATH[("", "v1", "pods")]
NODES = BY_PATH[("", "v1", "nodes")]
EVENTS = BY_PATH[("", "v1", "events")]
GPU = "nvidia.com/gpu"
ALLOCATED_GPUS = "remotegpu.io/allocated-gpus"
PULL_FAILS_MARKER = "does-not-exist"
"""Images whose repository or tag contains this cannot be pulled (a digest is never matched)."""
NO_JUPYTER_MARKER = "nojupyter"
"""Images whose reference contains this have no `jupyter`: their readiness probe fails."""
SECRETS = BY_PATH[("", "v1", "secrets")]


def device_uuid(node: str, index: int) -> str:
    """A stable NVIDIA-style UUID for device `index` of `node`."""
    return "GPU-" + str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{node}/{index}"))


@dataclass
class Faults:
    """What goes wrong, by image or node; changed at run time."""

    image_pull: set[str] = field(default_factory=set)
    crash: set[str] = field(default_factory=set)
    oom: set[str] = field(default_factory=set)
    not_ready: set[str] = field(default_factory=set)
    no_jupyter: set[str] = field(default_factory=set)
    error_rate_5xx: float = 0.0
    next_5xx: int = 0
    slow_ms: int = 0
    gpu_utilisation: float = 0.0
    """What the simulated DCGM exporter reports for the GPUs of a pod without a utilisation annotation."""

    def pull_fails(self, image: str) -> bool:
        """Whether pulling `image` fails: it is on the deny-list (as written, or its repository), or its
        repository or tag contains `does-not-exist`. The digest of `repo@sha256:…` is not looked at."""
        named = image.split("@", 1)[0]
        last = named.rsplit("/", 1)[-1]
        repository = named.rsplit(":", 1)[0] if ":" in last else named
        return bool({image, named, repository} & self.image_pull) or PULL_FAILS_MARKER in named

    def lacks_jupyter(self, image: str) -> bool:
        """Whether `image` has no `jupyter`: it is on the `no_jupyter` list or its reference says so."""
        return image in self.no_jupyter or NO_JUPYTER_MARKER in image


def _requests(pod: Obj) -> tuple[int, int, int]:
    gpus = cpu = memory = 0
    for container in pod.get("spec", {}).get("containers", []):
        resources = container.get("resources", {})
        limits, requests = resources.get("limits", {}), resources.get("requests", {})
        gpus += int(limits.get(GPU, requests.get(GPU, 0)))
        cpu += parse_cpu_millis(requests.get("cpu", limits.get("cpu", 0)))
        memory += parse_bytes(requests.get("memory", limits.get("memory", 0)))
    return gpus, cpu, memory


def _key(pod: Obj) -> tuple[str, str]:
    return pod["metadata"].get("namespace", ""), pod["metadata"]["name"]


class Kubelets:
    """All nodes' kubelets and the scheduler, driven by the pod watch and a timer heap."""

    def __init__(self, store: Store, faults: Faults, start_delay: dt.timedelta, tick: float = 0.01) -> None:
        self.store, self.faults, self.start_delay, self.tick = store, faults, start_delay, tick
        self._logs: dict[tuple[str, str], list[str]] = {}
        self._log_written = threading.Condition()
        self._timers: list[tuple[float, int, tuple[str, str]]] = []
        self._counter = itertools.count()
        self._unschedulable: set[tuple[str, str]] = set()
        self._admitted: set[tuple[str, str]] = set()
        self._placed: dict[tuple[str, str], tuple[str, tuple[int, int, int]]] = {}
        self._usage: dict[str, tuple[int, int, int]] = {}
        self._nodes_cache: list[Obj] = []
        self._nodes_read_at = 0.0
        self._devices: dict[str, dict[tuple[str, str], list[int]]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the simulation thread."""
        self._watch = self.store.watch(PODS, None, lambda _obj: True, since=None)
        self._thread = threading.Thread(target=self._run, name="sim-kubelets", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the simulation thread."""
        self._stop.set()
        self._watch.events.put(None)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.store.unwatch(self._watch)

    def set_node_ready(self, node: str, ready: bool) -> None:
        """Flip a node's Ready condition (and, when it goes NotReady, its pods' readiness)."""
        (self.faults.not_ready.discard if ready else self.faults.not_ready.add)(node)
        self._write_node_ready(node, ready)
        if not ready:
            pods, _ = self.store.list(PODS, None, lambda p: p.get("spec", {}).get("nodeName") == node)
            for pod in pods:
                self._set_ready(pod, False, "NodeNotReady")

    # -- container logs ---------------------------------------------------------------------------
    def write_log(self, key: tuple[str, str], *lines: str) -> None:
        """Append to the log of the pod `key` (namespace, name), as its container would print."""
        with self._log_written:
            self._logs.setdefault(key, []).extend(lines)
            self._log_written.notify_all()

    def log_lines(self, key: tuple[str, str], after: int = 0, wait_s: float = 0.0) -> list[str]:
        """The log lines of `key` from index `after` on; waits up to `wait_s` for one when there is none."""
        with self._log_written:
            self._log_written.wait_for(lambda: len(self._logs.get(key, [])) > after, timeout=wait_s)
            return self._logs.get(key, [])[after:]

    # -- the loop -------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                event = self._watch.events.get(timeout=self.tick)
            except Exception:
                event = None
            if event is not None and event.get("type") in {"ADDED", "MODIFIED"}:
                self._on_pod(event["object"])
            elif event is not None and event.get("type") == "DELETED":
                self._forget(_key(event["object"]))
            self._fire_due_timers()
            if self._unschedulable:
                self._retry_unschedulable()

    def _on_pod(self, pod: Obj) -> None:
        status = pod.get("status", {})
        if status.get("phase") in {"Running", "Failed", "Succeeded"} or _key(pod) in self._admitted:
            return
        node = pod.get("spec", {}).get("nodeName")
        if not node:
            self._schedule(pod)
        else:
            self._admit(pod, node)

    def _schedule(self, pod: Obj) -> None:
        gpus, cpu, memory = _requests(pod)
        nodes = self._nodes()
        for node in nodes:
            name = node["metadata"]["name"]
            if name in self.faults.not_ready or not self._fits(node, gpus, cpu, memory):
                continue
            self._unschedulable.discard(_key(pod))
            self._place(_key(pod), name, (gpus, cpu, memory))
            try:
                self.store.patch(PODS, *_key(pod), {"spec": {"nodeName": name}})
            except ApiError:
                return
            return
        if _key(pod) not in self._unschedulable:
            self._unschedulable.add(_key(pod))
            message = f"0/{len(nodes)} nodes are available: insufficient {GPU}, cpu or memory."
            self._event(pod, "Warning", "FailedScheduling", message)
            self._patch_status(
                pod,
                {
                    "phase": "Pending",
                    "conditions": [_condition("PodScheduled", False, "Unschedulable", message)],
                },
            )

    def _retry_unschedulable(self) -> None:
        for namespace, name in list(self._unschedulable):
            try:
                pod = self.store.get(PODS, namespace, name)
            except ApiError:
                self._unschedulable.discard((namespace, name))
                continue
            gpus, cpu, memory = _requests(pod)
            nodes = self._nodes()
            if any(
                n["metadata"]["name"] not in self.faults.not_ready and self._fits(n, gpus, cpu, memory)
                for n in nodes
            ):
                self._schedule(pod)

    def _admit(self, pod: Obj, node_name: str) -> None:
        try:
            node = self.store.get(NODES, None, node_name)
        except ApiError:
            self._patch_status(
                pod, {"phase": "Failed", "reason": "NodeNotFound", "message": f"node {node_name} not found"}
            )
            return
        gpus, _, _ = _requests(pod)
        free = self._free_devices(node)
        if gpus > len(free):
            message = f"Node didn't have enough resource: {GPU}, requested: {gpus}, free: {len(free)}"
            self._patch_status(pod, {"phase": "Failed", "reason": f"OutOf{GPU}", "message": message})
            self._event(pod, "Warning", f"OutOf{GPU}", message)
            return
        taken = free[:gpus]
        self._admitted.add(_key(pod))
        self._place(_key(pod), node_name, _requests(pod))
        with self._lock:
            self._devices.setdefault(node_name, {})[_key(pod)] = taken
        annotations = {ALLOCATED_GPUS: ",".join(device_uuid(node_name, i) for i in taken)}
        try:
            self.store.patch(PODS, *_key(pod), {"metadata": {"annotations": annotations}})
        except ApiError:
            return
        self._patch_status(
            pod,
            {
                "phase": "Pending",
                "hostIP": "10.0.0.1",
                "conditions": [_condition("PodScheduled", True)],
                "containerStatuses": [
                    _waiting(c["name"], "ContainerCreating", "", c.get("image", ""))
                    for c in pod["spec"].get("containers", [])
                ],
            },
        )
        self._event(
            pod, "Normal", "Scheduled", f"Successfully assigned {pod['metadata']['name']} to {node_name}"
        )
        self._after(self.start_delay.total_seconds(), _key(pod))

    def _fire_due_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, key = heapq.heappop(self._timers)
            try:
                pod = self.store.get(PODS, *key)
            except ApiError:
                continue
            self._start(pod)

    def _start(self, pod: Obj) -> None:
        image = pod["spec"]["containers"][0].get("image", "") if pod["spec"].get("containers") else ""
        name = pod["spec"]["containers"][0]["name"] if pod["spec"].get("containers") else "main"
        node = pod["spec"].get("nodeName", "")
        if self.faults.pull_fails(image):
            self._fail_pull(pod, name, image)
            return
        if image in self.faults.crash or image in self.faults.oom:
            reason = "OOMKilled" if image in self.faults.oom else "Error"
            status = _waiting(name, "CrashLoopBackOff", "back-off restarting failed container", image)
            status["restartCount"] = 3
            status["lastState"] = {
                "terminated": {"reason": reason, "exitCode": 137 if reason == "OOMKilled" else 1}
            }
            self._patch_status(pod, {"phase": "Running", "containerStatuses": [status]})
            self.write_log(_key(pod), f"container {name} exited: {reason}")
            return
        missing = self._missing_secret(pod)
        if missing is not None:
            message = f'secret "{missing}" not found'
            self._event(pod, "Warning", "Failed", f"Error: {message}")
            status = _waiting(name, "CreateContainerConfigError", message, image)
            self._patch_status(pod, {"phase": "Pending", "containerStatuses": [status]})
            return
        probed = "readinessProbe" in pod["spec"]["containers"][0]
        probe_fails = probed and self.faults.lacks_jupyter(image)
        ready = node not in self.faults.not_ready and not probe_fails
        running = {
            "name": name,
            "ready": ready,
            "restartCount": 0,
            "image": image,
            "imageID": f"sim://{image}",
            "started": True,
            "state": {"running": {"startedAt": now_iso()}},
        }
        self._patch_status(
            pod,
            {
                "phase": "Running",
                "podIP": "10.244.0.10",
                "startTime": now_iso(),
                "conditions": [_condition("PodScheduled", True), _condition("Ready", ready)],
                "containerStatuses": [running],
            },
        )
        self.write_log(
            _key(pod),
            f"Pulled image {image}",
            f"Started container {name}",
            f"command: {' '.join(pod['spec']['containers'][0].get('command', []))}",
        )
        self._event(pod, "Normal", "Started", f"Started container {name}")
        if probe_fails:
            self.write_log(_key(pod), "jupyter not found in the image; Jupyter is not started")
            self._event(pod, "Warning", "Unhealthy", "Readiness probe failed: ")

    def _missing_secret(self, pod: Obj) -> str | None:
        """The first Secret a container's variables refer to that does not exist, if any."""
        namespace = pod["metadata"].get("namespace")
        for container in pod["spec"].get("containers", []):
            for variable in container.get("env", []):
                reference = (variable.get("valueFrom") or {}).get("secretKeyRef")
                if not reference:
                    continue
                try:
                    self.store.get(SECRETS, namespace, reference["name"])
                except ApiError:
                    return str(reference["name"])
        return None

    def _fail_pull(self, pod: Obj, name: str, image: str) -> None:
        """As a kubelet does: ErrImagePull at once, ImagePullBackOff after a back-off; the pod stays Pending."""
        statuses = pod.get("status", {}).get("containerStatuses") or [{}]
        if statuses[0].get("state", {}).get("waiting", {}).get("reason") != "ErrImagePull":
            message = f'failed to pull and unpack image "{image}": not found'
            self._event(pod, "Normal", "Pulling", f'Pulling image "{image}"')
            self._event(pod, "Warning", "Failed", f'Failed to pull image "{image}": {message}')
            self._patch_status(
                pod,
                {"phase": "Pending", "containerStatuses": [_waiting(name, "ErrImagePull", message, image)]},
            )
            self._after(self.start_delay.total_seconds(), _key(pod))
            return
        back_off = f'Back-off pulling image "{image}"'
        self._event(pod, "Normal", "BackOff", back_off)
        self._patch_status(pod, {"containerStatuses": [_waiting(name, "ImagePullBackOff", back_off, image)]})

    # -- helpers ----------------------------------------------------------------------------------
    def _fits(self, node: Obj, gpus: int, cpu: int, memory: int) -> bool:
        allocatable = node.get("status", {}).get("allocatable", {})
        used_gpus, used_cpu, used_memory = self._usage.get(node["metadata"]["name"], (0, 0, 0))
        return (
            used_gpus + gpus <= int(allocatable.get(GPU, 0))
            and used_cpu + cpu <= parse_cpu_millis(allocatable.get("cpu", 0))
            and used_memory + memory <= parse_bytes(allocatable.get("memory", 0))
        )

    def _place(self, key: tuple[str, str], node: str, requests: tuple[int, int, int]) -> None:
        """Count a pod's requests against its node (once)."""
        if key in self._placed:
            return
        self._placed[key] = (node, requests)
        gpus, cpu, memory = self._usage.get(node, (0, 0, 0))
        self._usage[node] = (gpus + requests[0], cpu + requests[1], memory + requests[2])

    def _unplace(self, key: tuple[str, str]) -> None:
        placed = self._placed.pop(key, None)
        if placed is None:
            return
        node, (gpus, cpu, memory) = placed
        used = self._usage.get(node, (0, 0, 0))
        self._usage[node] = (used[0] - gpus, used[1] - cpu, used[2] - memory)

    def _nodes(self) -> list[Obj]:
        """The node list, refreshed at most every second (nodes rarely change)."""
        if time.monotonic() - self._nodes_read_at > 1.0:
            self._nodes_cache, _ = self.store.list(NODES, None, lambda _n: True, shared=True)
            self._nodes_read_at = time.monotonic()
        return self._nodes_cache

    def _free_devices(self, node: Obj) -> list[int]:
        name = node["metadata"]["name"]
        capacity = int(node.get("status", {}).get("capacity", {}).get(GPU, 0))
        with self._lock:
            taken = {index for indexes in self._devices.get(name, {}).values() for index in indexes}
        return [index for index in range(capacity) if index not in taken]

    def _forget(self, key: tuple[str, str]) -> None:
        with self._lock:
            for devices in self._devices.values():
                devices.pop(key, None)
        self._unschedulable.discard(key)
        self._admitted.discard(key)
        self._unplace(key)

    def _after(self, seconds: float, key: tuple[str, str]) -> None:
        heapq.heappush(self._timers, (time.monotonic() + seconds, next(self._counter), key))

    def _patch_status(self, pod: Obj, status: dict[str, Any]) -> None:
        with contextlib.suppress(ApiError):  # the pod was deleted meanwhile
            self.store.patch(PODS, *_key(pod), {"status": status})

    def _set_ready(self, pod: Obj, ready: bool, reason: str) -> None:
        conditions = [c for c in pod.get("status", {}).get("conditions", []) if c.get("type") != "Ready"]
        self._patch_status(pod, {"conditions": [*conditions, _condition("Ready", ready, reason)]})

    def _write_node_ready(self, node: str, ready: bool) -> None:
        try:
            current = self.store.get(NODES, None, node)
        except ApiError:
            return
        conditions = [c for c in current.get("status", {}).get("conditions", []) if c.get("type") != "Ready"]
        reason = "KubeletReady" if ready else "NodeStatusUnknown"
        conditions.append({**_condition("Ready", ready, reason), "lastHeartbeatTime": now_iso()})
        self.store.patch(NODES, None, node, {"status": {"conditions": conditions}})

    def _event(self, pod: Obj, kind: str, reason: str, message: str) -> None:
        namespace, name = _key(pod)
        event = {
            "metadata": {"name": f"{name}.{uuid.uuid4().hex[:12]}", "namespace": namespace},
            "involvedObject": {
                "kind": "Pod",
                "name": name,
                "namespace": namespace,
                "uid": pod["metadata"].get("uid"),
            },
            "reason": reason,
            "message": message,
            "type": kind,
            "count": 1,
            "firstTimestamp": now_iso(),
            "lastTimestamp": now_iso(),
            "source": {"component": "sim-kubelet", "host": pod.get("spec", {}).get("nodeName", "")},
        }
        with contextlib.suppress(ApiError):
            self.store.create(EVENTS, namespace, event)


def _condition(kind: str, status: bool, reason: str = "", message: str = "") -> dict[str, str]:
    condition = {"type": kind, "status": "True" if status else "False", "lastTransitionTime": now_iso()}
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    return condition


def _waiting(name: str, reason: str, message: str = "", image: str = "") -> dict[str, Any]:
    state: dict[str, Any] = {"reason": reason}
    if message:
        state["message"] = message
    return {
        "name": name,
        "ready": False,
        "restartCount": 0,
        "image": image,
        "imageID": "",
        "state": {"waiting": state},
    }
