"""Plumbing around the official `kubernetes` client: building API clients, calling, mapping errors.

Every create is create-or-get: a 409 means the object exists (it has a deterministic name), which is
what a repeated step after a crash must find. Reads and deletes treat 404 as "not there". Responses are
read as plain JSON (`_preload_content=False`), which keeps the driver independent of the client's model
classes. 5xx answers and connection errors become `ClusterUnavailableError`, a temporary error the
reconciler retries.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import msgspec
import urllib3
from kubernetes import client, config, watch  # type: ignore[import-untyped,unused-ignore]

from remotegpu.core.cluster.driver import ClusterUnavailableError

T = TypeVar("T")


def in_cluster() -> bool:
    """Whether this process runs in a pod with a service account token: there, no kubeconfig means the
    pod's own cluster, as `kubectl` and client-go decide."""
    import os

    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.exists(
        "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )


def api_client_from_kubeconfig(path: str | None = None) -> Any:
    """An API client from a kubeconfig file, or from the in-cluster service account when `path` is None
    and the process runs in a pod."""
    if path is None:
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call,unused-ignore]
            return client.ApiClient()
        except config.ConfigException:
            pass
    return config.new_client_from_config(path)  # type: ignore[no-untyped-call,unused-ignore]


def without_retries(api_client: Any) -> Any:
    """A client on `api_client`'s configuration whose requests urllib3 does not retry: a failed watch
    request is simply made again by the watch loop."""
    configuration = copy.deepcopy(api_client.configuration)
    configuration.retries = False
    return client.ApiClient(configuration)


def call_api(request: Callable[[], T]) -> T:
    """Make one request; 5xx answers and connection errors raise `ClusterUnavailableError`."""
    try:
        return request()
    except client.ApiException as error:
        if error.status is not None and error.status >= 500:
            raise ClusterUnavailableError(f"Kubernetes API answered {error.status}: {error.reason}") from None
        raise
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise ClusterUnavailableError(f"Kubernetes API unreachable: {error.__class__.__name__}") from None


def create_or_get(namespace: str, create: Callable[..., Any], manifest: dict[str, Any]) -> bool:
    """Create the object; False when it exists already (deterministic names make that the idempotent path)."""
    try:
        call_api(lambda: create(namespace, manifest, _preload_content=False))
    except client.ApiException as error:
        if error.status == 409:
            return False
        raise
    return True


def read_or_none(read: Callable[[], Any]) -> dict[str, Any] | None:
    """The object as JSON; None when it does not exist."""
    try:
        return as_json(call_api(read))
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise


def delete_if_present(delete: Callable[[], Any]) -> bool:
    """Delete the object; False when it was gone already."""
    try:
        call_api(delete)
    except client.ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def bound(request: Callable[..., T], *args: Any, **kwargs: Any) -> Callable[[], T]:
    """`request` with its arguments bound now (a lambda in a loop would see the loop's last value)."""
    return lambda: request(*args, **kwargs)


def as_json(response: Any) -> dict[str, Any]:
    """The body of an answer requested with `_preload_content=False` (msgspec: a listing of 2,000 nodes
    took the standard library's decoder about a second of the leader's host sync)."""
    data: dict[str, Any] = msgspec.json.decode(response.data)
    return data


def streamed_lines(response: Any) -> Iterator[str]:
    """The lines of a streamed log answer; the connection goes back to the pool however it ends."""
    try:
        pending = b""
        for chunk in response.stream(4096):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            yield from (line.decode(errors="replace") for line in lines)
        if pending:
            yield pending.decode(errors="replace")
    finally:
        response.release_conn()


class RawWatch(watch.Watch):  # type: ignore[misc,unused-ignore]
    """A watch whose events keep the object as parsed JSON.

    The stock watch turns every event into the client's model classes (a `V1Pod` per event, a fifth of a
    reconciler's CPU under load); we read three labels and a few status fields, so plain dicts do.
    """

    def get_return_type(self, func: Callable[..., Any]) -> None:
        """No model type: `unmarshal_event` then leaves the object as it came."""
        return None

    def unmarshal_event(self, data: str, return_type: Any) -> Any:
        """The event as parsed JSON, noting its object's resourceVersion (the stock watch notes it only
        for model types), so that a new watch can resume where this one ended."""
        event = super().unmarshal_event(data, return_type)  # type: ignore[no-untyped-call,unused-ignore]
        if isinstance(event, dict) and event.get("type") != "ERROR":
            metadata = (event.get("raw_object") or {}).get("metadata") or {}
            if "resourceVersion" in metadata:
                self.resource_version = metadata["resourceVersion"]
        return event
