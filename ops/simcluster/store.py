"""The simulated cluster's object store: typed resources, resourceVersions, selectors and watches.

Semantics follow the Kubernetes API server where RemoteGPU and `kubectl` depend on them: every write
bumps one global resourceVersion; create of an existing name is 409 AlreadyExists; update with a stale
resourceVersion is 409 Conflict; an invalid name is 422 Invalid; a missing object is 404 NotFound; a
watch replays events newer than the given resourceVersion (410 Gone when it is too old) and then streams.
"""

from __future__ import annotations

import copy
import datetime as dt
import queue
import re
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from remotegpu.ops.simcluster.selectors import Predicate

Obj = dict[str, Any]

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


@dataclass(frozen=True)
class Resource:
    """One kind the simulated API serves."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ("create", "delete", "get", "list", "patch", "update", "watch")

    @property
    def api_version(self) -> str:
        """`v1` or `group/version`."""
        return f"{self.group}/{self.version}" if self.group else self.version


RESOURCES = (
    Resource("", "v1", "namespaces", "Namespace", False, ("ns",)),
    Resource("", "v1", "nodes", "Node", False, ("no",)),
    Resource("", "v1", "pods", "Pod", True, ("po",)),
    Resource("", "v1", "services", "Service", True, ("svc",)),
    Resource("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ("pvc",)),
    Resource("", "v1", "configmaps", "ConfigMap", True, ("cm",)),
    Resource("", "v1", "secrets", "Secret", True),
    Resource("", "v1", "events", "Event", True, ("ev",)),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",)),
    Resource("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, ("netpol",)),
    # What a deployment of RemoteGPU itself is made of: stored and listed, never run.
    Resource("apps", "v1", "deployments", "Deployment", True, ("deploy",)),
    Resource("apps", "v1", "daemonsets", "DaemonSet", True, ("ds",)),
    Resource("batch", "v1", "jobs", "Job", True),
    Resource("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ("pdb",)),
    Resource("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
)
BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}


class ApiError(Exception):
    """An API error with its HTTP code and Kubernetes `Status` reason."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def status(self) -> Obj:
        """The `Status` body Kubernetes clients parse."""
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": self.details,
            "code": self.code,
        }


def now_iso() -> str:
    """RFC 3339 time as Kubernetes writes it."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Watch:
    resource: Resource
    namespace: str | None
    matches: Predicate
    events: queue.Queue[Obj | None] = field(default_factory=queue.Queue)
    served: bool = False
    """A client's watch over HTTP (the kubelets' own watch is not: a dropped connection never ends it)."""


class Store:
    """Thread-safe storage of every object, keyed by resource, namespace and name."""

    HISTORY = 10_000

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._version = 1
        self._objects: dict[str, dict[tuple[str, str], Obj]] = {r.plural: {} for r in RESOURCES}
        self._history: deque[tuple[int, str, str, Obj]] = deque(maxlen=self.HISTORY)
        self._watches: list[_Watch] = []

    @property
    def resource_version(self) -> int:
        """The current global resourceVersion."""
        return self._version

    def create(self, resource: Resource, namespace: str | None, obj: Obj) -> Obj:
        """Store a new object; 409 when the name exists, 422 when it is invalid."""
        metadata = obj.setdefault("metadata", {})
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = metadata["generateName"] + uuid.uuid4().hex[:5]
        name = metadata.get("name", "")
        if not _NAME.match(name):
            raise ApiError(
                422,
                "Invalid",
                f'{resource.kind} "{name}" is invalid: metadata.name: Invalid value: "{name}": a lowercase'
                " RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'",
                {"name": name, "kind": resource.plural},
            )
        from remotegpu.ops.simcluster.validation import validate  # it names this module's types

        validate(resource, obj)
        with self._lock:
            unknown_namespace = bool(namespace) and ("", namespace) not in self._objects["namespaces"]
            if resource.namespaced and namespace != "default" and unknown_namespace:
                raise ApiError(404, "NotFound", f'namespaces "{namespace}" not found', {"name": namespace})
            key = (namespace or "" if resource.namespaced else "", name)
            if key in self._objects[resource.plural]:
                raise ApiError(
                    409,
                    "AlreadyExists",
                    f'{resource.plural} "{name}" already exists',
                    {"name": name, "kind": resource.plural},
                )
            obj["apiVersion"], obj["kind"] = resource.api_version, resource.kind
            metadata.update(uid=str(uuid.uuid4()), creationTimestamp=now_iso())
            if resource.plural == "pods":
                # As a real API server does: a new pod is Pending before any scheduler or kubelet runs.
                obj.setdefault("status", {}).setdefault("phase", "Pending")
            if resource.namespaced:
                metadata["namespace"] = key[0]
            return self._write(resource, key, obj, "ADDED")

    def get(self, resource: Resource, namespace: str | None, name: str) -> Obj:
        """A deep copy of one object; 404 when missing."""
        with self._lock:
            found = self._objects[resource.plural].get(self._key(resource, namespace, name))
            if found is None:
                raise ApiError(
                    404,
                    "NotFound",
                    f'{resource.plural} "{name}" not found',
                    {"name": name, "kind": resource.plural},
                )
            return copy.deepcopy(found)

    def list(
        self, resource: Resource, namespace: str | None, matches: Predicate, *, shared: bool = False
    ) -> tuple[list[Obj], int]:
        """Matching objects (all namespaces when `namespace` is None) and the list's resourceVersion.

        `shared`: the stored objects themselves, for a caller that only reads them (serialises, looks
        up a field). A stored object is never changed in place (a write stores a new one), so sharing is
        safe, and the lock is held for a scan instead of a deep copy of every object: a 10,000-pod list
        held it for seconds, stalling every other call and watch of the cluster."""
        with self._lock:
            found = [
                obj
                for (ns, _), obj in sorted(self._objects[resource.plural].items())
                if (namespace is None or ns == namespace) and matches(obj)
            ]
            version = self._version
        return (found if shared else [copy.deepcopy(obj) for obj in found]), version

    def replace(self, resource: Resource, namespace: str | None, name: str, obj: Obj) -> Obj:
        """Replace an object; 409 Conflict when `metadata.resourceVersion` is given and stale."""
        from remotegpu.ops.simcluster.validation import validate  # it names this module's types

        validate(resource, obj)
        with self._lock:
            current = self.get(resource, namespace, name)
            given = obj.get("metadata", {}).get("resourceVersion")
            if given and given != current["metadata"]["resourceVersion"]:
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {resource.plural} "{name}": the object has been'
                    " modified; please apply your changes to the latest version and try again",
                    {"name": name, "kind": resource.plural},
                )
            kept = {
                k: current["metadata"][k]
                for k in ("uid", "creationTimestamp", "namespace")
                if k in current["metadata"]
            }
            obj.setdefault("metadata", {}).update(kept, name=name)
            obj["apiVersion"], obj["kind"] = resource.api_version, resource.kind
            return self._write(resource, self._key(resource, namespace, name), obj, "MODIFIED")

    def patch(self, resource: Resource, namespace: str | None, name: str, patch: Obj) -> Obj:
        """Apply a JSON merge patch (also used for strategic merge patches of maps)."""
        with self._lock:
            current = self.get(resource, namespace, name)
            merged = _merge(current, patch)
            merged["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            return self.replace(resource, namespace, name, merged)

    def delete(self, resource: Resource, namespace: str | None, name: str) -> Obj:
        """Remove an object (immediately: the simulation has no finalizers); 404 when missing."""
        with self._lock:
            key = self._key(resource, namespace, name)
            if key not in self._objects[resource.plural]:
                raise ApiError(
                    404,
                    "NotFound",
                    f'{resource.plural} "{name}" not found',
                    {"name": name, "kind": resource.plural},
                )
            obj = self._objects[resource.plural].pop(key)
            self._version += 1
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = str(self._version)
            self._publish(resource, key[0], "DELETED", obj)
            return obj

    def watch(
        self,
        resource: Resource,
        namespace: str | None,
        matches: Predicate,
        since: int | None,
        *,
        served: bool = False,
    ) -> _Watch:
        """Subscribe to changes: with `since`, newer events are replayed first (410 when too old);
        without, every current object comes first as ADDED."""
        with self._lock:
            subscription = _Watch(resource, namespace, matches, served=served)
            if since is None:  # "start at most recent": the current objects first, as ADDED events
                for (ns, _), obj in sorted(self._objects[resource.plural].items()):
                    if (namespace is None or ns == namespace) and matches(obj):
                        subscription.events.put({"type": "ADDED", "object": _for(subscription, obj)})
            elif since < self._version:
                if self._history and since < self._history[0][0] - 1:
                    raise ApiError(410, "Expired", f"too old resource version: {since} ({self._version})")
                for version, plural, event_type, obj in self._history:
                    if version > since and plural == resource.plural and self._visible(subscription, obj):
                        subscription.events.put({"type": event_type, "object": _for(subscription, obj)})
            self._watches.append(subscription)
            return subscription

    def end_watches(self) -> int:
        """End every client's watch stream now (as an API server restart or a dropped connection does);
        returns how many. Clients must list again or resume from their last resource version."""
        with self._lock:
            ended = [subscription for subscription in self._watches if subscription.served]
            self._watches = [subscription for subscription in self._watches if not subscription.served]
        for subscription in ended:
            subscription.events.put(None)
        return len(ended)

    def unwatch(self, subscription: _Watch) -> None:
        """End a watch."""
        with self._lock:
            if subscription in self._watches:
                self._watches.remove(subscription)

    def _key(self, resource: Resource, namespace: str | None, name: str) -> tuple[str, str]:
        return (namespace or "" if resource.namespaced else "", name)

    def _write(self, resource: Resource, key: tuple[str, str], obj: Obj, event_type: str) -> Obj:
        self._version += 1
        obj["metadata"]["resourceVersion"] = str(self._version)
        stored = copy.deepcopy(obj)
        self._objects[resource.plural][key] = stored
        self._publish(resource, key[0], event_type, stored)
        return copy.deepcopy(stored)

    def _publish(self, resource: Resource, namespace: str, event_type: str, obj: Obj) -> None:
        self._history.append((self._version, resource.plural, event_type, obj))
        for subscription in self._watches:
            if subscription.resource.plural == resource.plural and self._visible(subscription, obj):
                subscription.events.put({"type": event_type, "object": _for(subscription, obj)})

    @staticmethod
    def _visible(subscription: _Watch, obj: Obj) -> bool:
        namespace = obj.get("metadata", {}).get("namespace", "")
        return (
            subscription.namespace is None or namespace == subscription.namespace
        ) and subscription.matches(obj)


def _for(subscription: _Watch, obj: Obj) -> Obj:
    """An event's object for `subscription`: a served watch only serialises it, so it shares the stored
    object (never changed in place); the kubelets' own watch gets a copy of its own."""
    return obj if subscription.served else copy.deepcopy(obj)


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result
