"""The simulated cluster's Job controller: every Job runs to completion.

A Job whose container runs our own `remotegpu` command (the dataset sync Jobs) is run for real when the
cluster has a volumes folder: as a process of this machine, with the container's environment (its
`envFrom` Secrets read from the store, as a kubelet would) and each PersistentVolumeClaim it mounts
mapped to a folder `<volumes>/<namespace>/<claim>` (arguments naming the mount path are rewritten to
it). Its exit status decides: `Complete`, or `Failed` with the command's last line as the message.
Any other Job, whose image the simulation cannot run, completes after the start delay. The controller
owns what it starts: `stop()` kills running commands.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from remotegpu.ops.simcluster.store import BY_PATH, ApiError, Obj, Store, now_iso

JOBS = BY_PATH[("batch", "v1", "jobs")]
SECRETS = BY_PATH[("", "v1", "secrets")]
OUR_COMMAND = "remotegpu"
RUN_TIMEOUT_S = 600
EXECUTABLE = shutil.which(OUR_COMMAND) or str(Path(sys.executable).with_name(OUR_COMMAND))


class JobController:
    """Runs each new Job once, on a thread of its own."""

    def __init__(self, store: Store, start_delay: float, volumes: Path | None = None) -> None:
        self.store, self.start_delay, self.volumes = store, start_delay, volumes
        self._started: set[tuple[str, str]] = set()
        self._processes: set[subprocess.Popen[str]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._watch = self.store.watch(JOBS, None, lambda _obj: True, since=None)
        self._thread = threading.Thread(target=self._run, name="sim-jobs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._watch.events.put(None)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.store.unwatch(self._watch)
        with self._lock:
            for process in self._processes:
                process.kill()

    def _run(self) -> None:
        while not self._stop.is_set():
            event = self._watch.events.get()
            if event is None:
                return
            job = event["object"]
            key = (job["metadata"].get("namespace", ""), job["metadata"]["name"])
            if event["type"] != "ADDED" or key in self._started or _finished(job):
                continue
            self._started.add(key)
            threading.Thread(target=self._work, args=(job,), name=f"sim-job-{key[1]}", daemon=True).start()

    def _work(self, job: Obj) -> None:
        namespace, name = job["metadata"].get("namespace", ""), job["metadata"]["name"]
        if not self._patch(namespace, name, {"status": {"active": 1, "startTime": now_iso()}}):
            return
        container = job["spec"]["template"]["spec"]["containers"][0]
        if self.volumes is not None and container.get("command") == [OUR_COMMAND]:
            failure = self._execute(namespace, job, container)
        else:
            time.sleep(self.start_delay)
            failure = None
        condition: dict[str, str] = {"type": "Complete", "status": "True", "lastTransitionTime": now_iso()}
        counts = {"active": None, "succeeded": 1, "completionTime": now_iso()}
        if failure is not None:
            condition = {
                "type": "Failed",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": failure,
            }
            counts = {"active": None, "failed": 1}
        self._patch(namespace, name, {"status": {**counts, "conditions": [condition]}})

    def _execute(self, namespace: str, job: Obj, container: Obj) -> str | None:
        """Run the container's command here; None on success, else its last line."""
        assert self.volumes is not None
        pod = job["spec"]["template"]["spec"]
        claims = {
            v["name"]: v["persistentVolumeClaim"]["claimName"]
            for v in pod.get("volumes", [])
            if "persistentVolumeClaim" in v
        }
        paths: dict[str, str] = {}
        for mount in container.get("volumeMounts", []):
            if mount["name"] in claims:
                folder = self.volumes / namespace / claims[mount["name"]]
                folder.mkdir(parents=True, exist_ok=True)
                paths[mount["mountPath"]] = str(folder)
        args = [_mapped(arg, paths) for arg in container.get("args", [])]
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("REMOTEGPU_", "AWS_")) and k != "DATABASE_URL"
        }
        env |= self._variables(namespace, container)
        # only our own executable runs, with the arguments a sync Job's container would get
        process = subprocess.Popen(  # noqa: S603
            [EXECUTABLE, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        with self._lock:
            self._processes.add(process)
        try:
            output, _ = process.communicate(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        finally:
            with self._lock:
                self._processes.discard(process)
        if process.returncode == 0:
            return None
        lines = [line for line in output.splitlines() if line.strip()]
        return (lines[-1] if lines else f"exit status {process.returncode}")[:500]

    def _variables(self, namespace: str, container: Obj) -> dict[str, str]:
        variables: dict[str, str] = {}
        for source in container.get("envFrom", []):
            secret = source.get("secretRef", {}).get("name")
            if secret:
                data = self.store.get(SECRETS, namespace, secret).get("data", {})
                variables |= {k: base64.b64decode(v).decode() for k, v in data.items()}
        variables |= {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
        return variables

    def _patch(self, namespace: str, name: str, patch: Obj) -> bool:
        try:
            self.store.patch(JOBS, namespace, name, patch)
        except ApiError:  # the Job was deleted meanwhile
            return False
        return True


def _finished(job: Obj) -> bool:
    conditions: list[dict[str, Any]] = job.get("status", {}).get("conditions") or []
    return any(c.get("type") in {"Complete", "Failed"} and c.get("status") == "True" for c in conditions)


def _mapped(arg: str, paths: dict[str, str]) -> str:
    for mount, folder in paths.items():
        if arg == mount or arg.startswith(mount.rstrip("/") + "/"):
            return folder + arg[len(mount.rstrip("/")) :]
    return arg
