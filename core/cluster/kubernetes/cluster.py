"""`KubernetesCluster`: the `ClusterDriver` on the official `kubernetes` client.

It composes the API plumbing (`client`), the pod-status mapping (`pod_status`), node parsing (`nodes`)
and the manifests; what is left here is which object goes to which namespace, and in which order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from kubernetes import client  # type: ignore[import-untyped,unused-ignore]

from remotegpu.core.cluster.driver import (
    WORKSPACE_NAMESPACE_PREFIX,
    DatasetSyncJob,
    NoContainerError,
    PodObservation,
    PodState,
    SyncObservation,
    WorkloadSpec,
    workload_name,
)
from remotegpu.core.cluster.kubernetes.client import (
    RawWatch,
    api_client_from_kubeconfig,
    as_json,
    bound,
    call_api,
    create_or_get,
    delete_if_present,
    read_or_none,
    streamed_lines,
    without_retries,
)
from remotegpu.core.cluster.kubernetes.dataset_sync import delete_syncs, ensure_sync
from remotegpu.core.cluster.kubernetes.nodes import foreign_usage_by_node, is_ready, observed_node
from remotegpu.core.cluster.kubernetes.pod_status import observation_from_pod, pod_events_from_listing
from remotegpu.core.cluster.kubernetes.read_versions import ReadVersions
from remotegpu.core.cluster.kubernetes.watched_pods import WatchedPods
from remotegpu.core.cluster.manifests import (
    ACCESS_IMAGE,
    ENVIRONMENT_LABEL,
    MANAGED_LABEL,
    MANAGER,
    PULL_SECRET_NAME,
    env_config_map_manifest,
    env_config_map_name,
    environment_secret_manifest,
    home_claim_manifest,
    network_policy_manifest,
    pod_manifest,
    pull_secret_manifest,
    service_manifest,
    volume_claim_manifest,
    volume_claim_name,
)
from remotegpu.core.inventory.sync import ForeignUsage, ObservedNode
from remotegpu.core.registry.credentials import PullSecret

_log = logging.getLogger(__name__)

WATCH_TIMEOUT_S = 5
"""How long the API server keeps one pod watch stream open before it ends it (a new one resumes)."""

METADATA_ONLY = {
    "Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
}
"""Listings that need names and labels only ask for metadata (the API server's `PartialObjectMetadata`),
so garbage collection's listing of every object of ours does not carry every pod's spec and status."""


class KubernetesCluster:
    """`ClusterDriver` for a real (or simulated) Kubernetes cluster.

    Objects live in one namespace, or with `namespace_per_workspace` in one namespace per workspace
    (`<namespace_prefix><workspace id>`, created on first use). The namespace of an environment is
    remembered when its objects are created; after a restart it is found again by label.
    """

    def __init__(
        self,
        api_client: Any,
        *,
        namespace: str = "default",
        namespace_per_workspace: bool = False,
        namespace_prefix: str = WORKSPACE_NAMESPACE_PREFIX,
        storage_class: str | None = None,
        access_image: str = ACCESS_IMAGE,
        registry_credentials: Callable[[], str | None] | None = None,
        pull_secrets: Callable[[str], PullSecret | None] | None = None,
        gpu_binding: str = "device-plugin",
    ) -> None:
        self.namespace = namespace
        self.namespace_per_workspace = namespace_per_workspace
        self.namespace_prefix = namespace_prefix
        self.storage_class = storage_class
        self.access_image = access_image
        self.gpu_binding = gpu_binding
        """`device-plugin` or `device-id` (see `core.cluster.manifests.pod_manifest`)."""
        self.registry_credentials = registry_credentials
        """Gives the current Docker config JSON for private registries (None: none), e.g. a
        `CachedRegistryCredentials` over the secrets store; never logged (it is a secret)."""
        self.pull_secrets = pull_secrets
        """Gives the pull Secret of an image's configured registry (or project), which replaces the
        platform-wide one for that image (`RegistryDirectory.pull_secret`); None: none configured."""
        self._core = client.CoreV1Api(api_client)
        self._networking = client.NetworkingV1Api(api_client)
        self._batch = client.BatchV1Api(api_client)
        self._watching = client.CoreV1Api(without_retries(api_client))
        self._policies: set[str] = set()
        self._namespaces: set[str] = set()
        self._placed_in: dict[uuid.UUID, str] = {}
        self._pull_secrets: dict[tuple[str, str], str] = {}
        """(namespace, Secret name) → digest of the credentials it was last written with."""
        self._secret_digests: dict[tuple[str, str], str] = {}
        """(namespace, name) -> digest of the data this process last wrote or read back, so an unchanged
        access Secret costs no API call on a resync. Forgotten when we delete the Secret."""
        self._pods_read = ReadVersions()
        """The pod version each environment's last observation read, so the watch's event for the same
        version does not make the environment due again."""
        self._watched = WatchedPods()
        """Observations the pod watch vouches for: a resync of a settled environment reads no pod."""
        self._nodes_read: dict[str, tuple[str, ObservedNode]] = {}
        """Node name -> (resourceVersion, the node as `observed_node` read it) of the last listing: an
        object with the same resourceVersion is the same object, so it is not read again."""

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, **options: Any) -> KubernetesCluster:
        """Load a kubeconfig file (or the in-cluster service account when `path` is None and it exists)."""
        return cls(api_client_from_kubeconfig(path), **options)

    # -- namespaces ---------------------------------------------------------------------------------
    def namespace_for(self, workspace_id: uuid.UUID) -> str:
        """The namespace a workspace's objects go to."""
        return f"{self.namespace_prefix}{workspace_id}" if self.namespace_per_workspace else self.namespace

    def namespace_of(self, environment_id: uuid.UUID) -> str | None:
        """Where an environment's objects are; None when it has none anywhere."""
        if not self.namespace_per_workspace:
            return self.namespace
        if environment_id in self._placed_in:
            return self._placed_in[environment_id]
        selector = f"{ENVIRONMENT_LABEL}={environment_id}"
        listings: list[Callable[..., Any]] = [
            self._core.list_pod_for_all_namespaces,
            self._core.list_service_for_all_namespaces,
            self._core.list_persistent_volume_claim_for_all_namespaces,
            self._core.list_config_map_for_all_namespaces,
        ]
        for listing in listings:
            items = as_json(call_api(bound(listing, label_selector=selector, _preload_content=False)))
            for item in items.get("items", []):
                namespace = str(item["metadata"]["namespace"])
                self._placed_in[environment_id] = namespace
                return namespace
        return None

    def _ensure_namespace(self, namespace: str) -> None:
        if namespace in self._namespaces or not self.namespace_per_workspace:
            return
        manifest: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": {MANAGED_LABEL: MANAGER}},
        }
        try:
            call_api(bound(self._core.create_namespace, manifest, _preload_content=False))
        except client.ApiException as error:
            if error.status != 409:
                raise
        self._namespaces.add(namespace)

    # -- the driver protocol ----------------------------------------------------------------------
    def ensure_workload(self, spec: WorkloadSpec) -> bool:
        """Create the namespace and policy of the workspace, the volume claims, the variables, the
        service and the pod unless they exist."""
        namespace = self.namespace_for(spec.workspace_id)
        self._ensure_namespace(namespace)
        self._placed_in[spec.environment_id] = namespace
        if namespace + str(spec.workspace_id) not in self._policies:
            create_or_get(
                namespace,
                self._networking.create_namespaced_network_policy,
                network_policy_manifest(spec.workspace_id),
            )
            self._policies.add(namespace + str(spec.workspace_id))
        for volume in spec.volumes:
            create_or_get(
                namespace,
                self._core.create_namespaced_persistent_volume_claim,
                volume_claim_manifest(spec, volume, self.storage_class),
            )
        if spec.home is not None:
            create_or_get(
                namespace,
                self._core.create_namespaced_persistent_volume_claim,
                home_claim_manifest(spec, self.storage_class),
            )
        pull_secret = self._ensure_pull_secret(namespace, spec.image)
        if spec.env:
            create_or_get(namespace, self._core.create_namespaced_config_map, env_config_map_manifest(spec))
        create_or_get(namespace, self._core.create_namespaced_service, service_manifest(spec))
        self._watched.forget(spec.environment_id)
        return create_or_get(
            namespace,
            self._core.create_namespaced_pod,
            pod_manifest(
                spec,
                access_image=self.access_image,
                pull_secret=pull_secret or False,
                gpu_binding=self.gpu_binding,
            ),
        )

    def use_pull_secrets(self, provider: Callable[[str], PullSecret | None]) -> None:
        """Take each image's registry pull Secret from `provider` (unless one was given already)."""
        if self.pull_secrets is None:
            self.pull_secrets = provider

    def _ensure_pull_secret(self, namespace: str, image: str) -> str | None:
        """Keep the pull Secret the image needs in the namespace equal to its current credentials
        (created, or replaced when they changed since this process wrote it): its registry's own when
        that registry (or project) has a login, else the platform-wide one. Its name, or None."""
        own = self.pull_secrets(image) if self.pull_secrets else None
        credentials: str | None
        if own is not None:
            name, credentials = own.name, own.docker_config_json
        else:
            name, credentials = (
                PULL_SECRET_NAME,
                (self.registry_credentials() if self.registry_credentials else None),
            )
        if not credentials:
            return None
        digest = hashlib.sha256(credentials.encode()).hexdigest()
        if self._pull_secrets.get((namespace, name)) == digest:
            return name
        manifest = pull_secret_manifest(credentials, name)
        if not create_or_get(namespace, self._core.create_namespaced_secret, manifest):
            # It exists: from before a restart or from older credentials; write the current ones.
            replace: Callable[..., Any] = self._core.replace_namespaced_secret
            call_api(lambda: replace(name, namespace, manifest, _preload_content=False))
        self._pull_secrets[(namespace, name)] = digest
        return name

    def observe_workload(self, environment_id: uuid.UUID) -> PodObservation:
        """Map the pod's status to what the reconciler acts on."""
        namespace = self.namespace_of(environment_id)
        if namespace is None:
            return PodObservation(PodState.MISSING)
        watched = self._watched.get(environment_id)
        if watched is not None:
            return watched
        ticket = self._watched.ticket()
        name = workload_name(environment_id)
        pod = read_or_none(lambda: self._core.read_namespaced_pod(name, namespace, _preload_content=False))
        if pod is None:
            return PodObservation(PodState.MISSING)
        version = (pod.get("metadata") or {}).get("resourceVersion")
        self._pods_read.remember(environment_id, version)
        observation = observation_from_pod(pod)
        self._watched.keep(environment_id, version, observation, ticket)
        return observation

    def delete_workload(self, environment_id: uuid.UUID, *, keep_volumes: bool) -> bool:
        """Delete pod, service and variables, and the volume claims unless kept; gone already is fine."""
        namespace = self.namespace_of(environment_id)
        if namespace is None:
            return False
        name = workload_name(environment_id)
        self._watched.forget(environment_id)
        removed = self.delete_object("pod", namespace, name)
        removed |= self.delete_object("service", namespace, name)
        removed |= self.delete_object("configmap", namespace, env_config_map_name(environment_id))
        for secret in self._access_secrets(namespace, environment_id):
            removed |= self.delete_object("secret", namespace, secret)
        if not keep_volumes:
            removed |= delete_syncs(self._batch, namespace, str(environment_id))
            for claim in self.volume_claims(environment_id):
                removed |= self.delete_object("pvc", namespace, claim)
        # Remembered per environment only while its objects live: a map of every environment this
        # process ever placed would grow without end (kept volumes are found again by one listing).
        self._placed_in.pop(environment_id, None)
        return removed

    def ensure_dataset_sync(self, job: DatasetSyncJob) -> SyncObservation:
        """The dataset's claim and sync Job, created unless they exist; the Job's state."""
        namespace = self.namespace_for(job.workspace_id)
        self._ensure_namespace(namespace)
        self._placed_in[job.environment_id] = namespace
        return ensure_sync(self._core, self._batch, namespace, job, self.storage_class)

    def node_ready(self, node: str) -> bool:
        """The node's Ready condition; False when the node does not exist."""
        found = read_or_none(lambda: self._core.read_node(node, _preload_content=False))
        return found is not None and is_ready(found)

    def ensure_environment_secret(
        self, environment_id: uuid.UUID, workspace_id: uuid.UUID, suffix: str, data: Mapping[str, str]
    ) -> bool:
        """Create the Secret, or replace it when its content differs from `data`; True when written.

        What was written is remembered by digest: an unchanged Secret costs no request at all, and after a
        restart one read finds it equal. A Secret changed by hand behind our back is put right after a
        restart (or when the environment's pod is re-created), not on every resync."""
        namespace = self.namespace_for(workspace_id)
        self._ensure_namespace(namespace)
        self._placed_in[environment_id] = namespace
        manifest = environment_secret_manifest(environment_id, workspace_id, suffix, data)
        name = manifest["metadata"]["name"]
        digest = hashlib.sha256(json.dumps(manifest["data"], sort_keys=True).encode()).hexdigest()
        if self._secret_digests.get((namespace, name)) == digest:
            return False
        found = read_or_none(
            lambda: self._core.read_namespaced_secret(name, namespace, _preload_content=False)
        )
        written = True
        if found is None:
            written = create_or_get(namespace, self._core.create_namespaced_secret, manifest)
            if not written:  # created by another writer a moment ago: make it ours
                call_api(
                    bound(
                        self._core.replace_namespaced_secret,
                        name,
                        namespace,
                        manifest,
                        _preload_content=False,
                    )
                )
                written = True
        elif (found.get("data") or {}) != manifest["data"]:
            call_api(
                bound(self._core.replace_namespaced_secret, name, namespace, manifest, _preload_content=False)
            )
        else:
            written = False
        self._secret_digests[(namespace, name)] = digest
        return written

    def _access_secrets(self, namespace: str, environment_id: uuid.UUID) -> list[str]:
        selector = f"{MANAGED_LABEL}={MANAGER},{ENVIRONMENT_LABEL}={environment_id}"
        listed = call_api(
            lambda: self._core.list_namespaced_secret(
                namespace, label_selector=selector, _preload_content=False
            )
        )
        return [item["metadata"]["name"] for item in as_json(listed).get("items", [])]

    # -- more than the protocol -------------------------------------------------------------------
    def volume_claims(self, environment_id: uuid.UUID) -> list[str]:
        """Names of the environment's PVCs that exist."""
        namespace = self.namespace_of(environment_id)
        if namespace is None:
            return []
        selector = f"{ENVIRONMENT_LABEL}={environment_id}"
        listed = call_api(
            lambda: self._core.list_namespaced_persistent_volume_claim(
                namespace, label_selector=selector, _preload_content=False
            )
        )
        return [item["metadata"]["name"] for item in as_json(listed).get("items", [])]

    def volume_claim_exists(self, environment_id: uuid.UUID, volume: str) -> bool:
        """Whether one named PVC of the environment exists."""
        return volume_claim_name(environment_id, volume) in self.volume_claims(environment_id)

    def read_logs(self, environment_id: uuid.UUID, tail_lines: int | None = None) -> str:
        """The main container's log."""
        return "".join(f"{line}\n" for line in self.stream_logs(environment_id, tail_lines=tail_lines))

    def stream_logs(
        self, environment_id: uuid.UUID, *, follow: bool = False, tail_lines: int | None = None
    ) -> Iterator[str]:
        """The main container's log, line by line; with `follow`, new lines as they are written.

        The request is made before this returns, so a missing pod or a container that has not started
        raises `NoContainerError` here, not halfway through an HTTP answer that streams the lines."""
        namespace = self.namespace_of(environment_id)
        if namespace is None:
            raise NoContainerError("the environment has no running container (it has no pod)")
        try:
            response: Any = call_api(
                lambda: self._core.read_namespaced_pod_log(
                    workload_name(environment_id),
                    namespace,
                    follow=follow,
                    tail_lines=tail_lines,
                    _preload_content=False,
                )
            )
        except client.ApiException as error:
            # 404: no pod; 400: its container is waiting to start (pulling, creating, crash back-off).
            if error.status in {400, 404}:
                reason = "it has no pod" if error.status == 404 else "its container has not started"
                raise NoContainerError(f"the environment has no running container ({reason})") from None
            raise
        return streamed_lines(response)

    def pod_events(self, environment_id: uuid.UUID) -> list[dict[str, Any]]:
        """Kubernetes events about the environment's pod (scheduling, pulls, kills), oldest first."""
        namespace = self.namespace_of(environment_id)
        if namespace is None:
            return []
        selector = f"involvedObject.name={workload_name(environment_id)}"
        listed = as_json(
            call_api(
                lambda: self._core.list_namespaced_event(
                    namespace, field_selector=selector, _preload_content=False
                )
            )
        )
        return pod_events_from_listing(listed)

    def owned_objects(self) -> list[tuple[str, str, str, uuid.UUID]]:
        """(kind, namespace, name, environment id) of every pod, service, ConfigMap, Secret and PVC labelled
        as an environment's, in every namespace RemoteGPU uses."""
        selector = f"{MANAGED_LABEL}={MANAGER},{ENVIRONMENT_LABEL}"
        if self.namespace_per_workspace:
            listings: list[tuple[str, Callable[..., Any]]] = [
                ("pod", self._core.list_pod_for_all_namespaces),
                ("service", self._core.list_service_for_all_namespaces),
                ("configmap", self._core.list_config_map_for_all_namespaces),
                ("secret", self._core.list_secret_for_all_namespaces),
                ("pvc", self._core.list_persistent_volume_claim_for_all_namespaces),
            ]
            calls = [
                (
                    kind,
                    lambda listing=listing: listing(
                        label_selector=selector, _preload_content=False, _headers=METADATA_ONLY
                    ),
                )
                for kind, listing in listings
            ]
        else:
            namespaced: list[tuple[str, Callable[..., Any]]] = [
                ("pod", self._core.list_namespaced_pod),
                ("service", self._core.list_namespaced_service),
                ("configmap", self._core.list_namespaced_config_map),
                ("secret", self._core.list_namespaced_secret),
                ("pvc", self._core.list_namespaced_persistent_volume_claim),
            ]
            calls = [
                (
                    kind,
                    lambda listing=listing: listing(
                        self.namespace,
                        label_selector=selector,
                        _preload_content=False,
                        _headers=METADATA_ONLY,
                    ),
                )
                for kind, listing in namespaced
            ]
        found: list[tuple[str, str, str, uuid.UUID]] = []
        for kind, call in calls:
            for item in as_json(call_api(call)).get("items", []):
                metadata = item["metadata"]
                environment = uuid.UUID(metadata["labels"][ENVIRONMENT_LABEL])
                found.append((kind, metadata["namespace"], metadata["name"], environment))
        return found

    def delete_object(self, kind: str, namespace: str, name: str) -> bool:
        """Delete one owned object by kind (`pod`, `service`, `configmap`, `secret`, `pvc`); gone already
        is fine."""
        self._secret_digests.pop((namespace, name), None)
        deleters: dict[str, Callable[[], Any]] = {
            "pod": lambda: self._core.delete_namespaced_pod(name, namespace, grace_period_seconds=0),
            "service": lambda: self._core.delete_namespaced_service(name, namespace),
            "configmap": lambda: self._core.delete_namespaced_config_map(name, namespace),
            "secret": lambda: self._core.delete_namespaced_secret(name, namespace),
            "pvc": lambda: self._core.delete_namespaced_persistent_volume_claim(name, namespace),
        }
        return delete_if_present(deleters[kind])

    def watch_workloads(self, on_change: Callable[[uuid.UUID], None], stop: threading.Event) -> None:
        """Call `on_change(environment id)` for every change of one of our pods, until `stop` is set.

        A hint only: the reconciler still resyncs, so a missed event delays work and never loses it.
        An event for the very pod version a step's observation already read is no change to act on: the
        watch often delivers a pod's last change (Running) after the step that acted on it read it, and
        that made one in four environments due for a step that found nothing to do.
        Watches end every few seconds and connections drop; reconnecting is normal, so it is logged once
        at debug level (the watch's own client does not retry, as urllib3 would with a 7-line warning).
        While it runs unbroken, what it reports keeps `observe_workload`'s answers for pods that did not
        change since they were read (`WatchedPods`): a resync of a settled environment reads no pod.
        """
        selector = f"{MANAGED_LABEL}={MANAGER},{ENVIRONMENT_LABEL}"
        try:
            self._watch_pods(selector, on_change, stop)
        finally:
            self._watched.watch_broken()

    def _watch_pods(
        self, selector: str, on_change: Callable[[uuid.UUID], None], stop: threading.Event
    ) -> None:
        # Each new watch resumes where the last one ended. Started afresh, a watch first replays every
        # pod as ADDED: every 5 s, that made every running environment due again (10,000 steps per
        # watch at 10,000 environments) and had the API server copy every pod.
        since: str | None = None
        while not stop.is_set():
            stream = RawWatch()  # type: ignore[no-untyped-call,unused-ignore]
            options: dict[str, Any] = {
                "label_selector": selector,
                "timeout_seconds": WATCH_TIMEOUT_S,
                # a connection dropped without a word ends in a read timeout, not a wait for ever
                "_request_timeout": (WATCH_TIMEOUT_S, 2 * WATCH_TIMEOUT_S),
                # the server's bookmark before a stream ends carries the current version to resume from
                # (the last pod of the first stream's replay may be old enough to draw a 410)
                "allow_watch_bookmarks": True,
            }
            if since is None:
                self._watched.watch_started_afresh()  # it replays every pod as it is now
            else:
                options["resource_version"] = since
            try:
                if self.namespace_per_workspace:
                    events = stream.stream(  # type: ignore[no-untyped-call,unused-ignore]
                        self._watching.list_pod_for_all_namespaces, **options
                    )
                else:
                    events = stream.stream(  # type: ignore[no-untyped-call,unused-ignore]
                        self._watching.list_namespaced_pod, self.namespace, **options
                    )
                for event in events:
                    if stop.is_set():
                        stream.stop()  # type: ignore[no-untyped-call,unused-ignore]
                        break
                    self._pod_event(event, on_change)
                since = stream.resource_version or since
                self._watched.watch_alive()
            except client.ApiException as error:
                if error.status == 410:  # too old to resume: start afresh (every pod replayed once)
                    since = None
                    self._watched.watch_broken()  # changes in between are lost: nothing kept holds
                else:
                    self._watched.watch_interrupted()
                _log.debug("Pod watch dropped; starting a new one", extra={"error": error.__class__.__name__})
                stop.wait(1.0)
            except Exception as error:  # the API went away or the watch expired: start a new one shortly
                since = stream.resource_version or since
                self._watched.watch_interrupted()
                _log.debug("Pod watch dropped; starting a new one", extra={"error": error.__class__.__name__})
                stop.wait(1.0)

    def _pod_event(self, event: dict[str, Any], on_change: Callable[[uuid.UUID], None]) -> None:
        """One watch event: what is kept of the pod learns of it, and a change that is not the echo of
        a read makes its environment due (a bookmark names no environment)."""
        metadata = event["raw_object"].get("metadata") or {}
        labels = metadata.get("labels") or {}
        if ENVIRONMENT_LABEL not in labels:
            return
        changed = uuid.UUID(labels[ENVIRONMENT_LABEL])
        version = metadata.get("resourceVersion")
        self._watched.changed(changed, version, deleted=event.get("type") == "DELETED")
        if not self._pods_read.was_read(changed, version):
            on_change(changed)

    def list_nodes(self) -> list[ObservedNode]:
        """Every node, as inventory sync reads it, with what pods that are not ours use on it."""
        listed = as_json(call_api(lambda: self._core.list_node(_preload_content=False)))
        # Only pods that are not ours matter here; the API server filters, so ours never travel.
        pods = as_json(
            call_api(
                lambda: self._core.list_pod_for_all_namespaces(
                    label_selector=f"{MANAGED_LABEL}!={MANAGER}", _preload_content=False
                )
            )
        )
        foreign = foreign_usage_by_node(pods.get("items", []))
        return [
            dataclasses.replace(node, foreign=foreign.get(node.name, ForeignUsage()))
            for node in self._read_nodes(listed.get("items", []))
        ]

    def _read_nodes(self, items: list[dict[str, Any]]) -> list[ObservedNode]:
        """`observed_node` of each listed node, reusing the last listing's reading of a node whose
        resourceVersion did not change (a 2,000-node listing every host sync, nearly all unchanged)."""
        read: dict[str, tuple[str, ObservedNode]] = {}
        for item in items:
            metadata = item.get("metadata", {})
            version = metadata.get("resourceVersion")
            known = self._nodes_read.get(metadata.get("name", ""))
            if version and known is not None and known[0] == version:
                read[known[1].name] = known
            else:
                node = observed_node(item)
                read[node.name] = (version or "", node)
        self._nodes_read = read  # nodes gone from the cluster are forgotten with the listing
        return [node for _, node in read.values()]
