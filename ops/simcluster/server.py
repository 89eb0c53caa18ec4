"""The simulated cluster's HTTP front: the Kubernetes REST API over `ThreadingHTTPServer`.

Paths: discovery (`/version`, `/api`, `/api/v1`, `/apis`, `/apis/<group>[/<version>]`), the OpenAPI v3
index `kubectl` reads (`openapi.py`), core v1 and networking.k8s.io/v1 resources, and the kinds a
deployment of RemoteGPU is made of (apps/v1, batch/v1, policy/v1, rbac.authorization.k8s.io/v1: stored
and listed, not run), cluster-wide and per namespace; `status` subresources, pod `log`
(with `follow=true` a chunked stream of lines as the container writes them, until the pod ends or the
client goes away; 400 while the container has not started, as the kubelet answers), `?watch=1` streams
(newline-delimited JSON over chunked encoding), label and field selectors, and errors as `Status`
bodies. Faults: a share of requests answered 500/503, and slow responses. Beside the API, the
simulated DCGM exporter's `GET /dcgm/metrics` (`dcgm`), which the API's faults do not touch: in a real
cluster the exporter is another process.
"""

from __future__ import annotations

import json
import queue
import random
import re
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import msgspec

from remotegpu.ops.simcluster import dcgm, openapi
from remotegpu.ops.simcluster.kubelets import Faults, Kubelets
from remotegpu.ops.simcluster.selectors import field_selector, label_selector
from remotegpu.ops.simcluster.store import BY_PATH, RESOURCES, ApiError, Obj, Resource, Store
from remotegpu.ops.simcluster.tables import partial_metadata_list, table

_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[a-z0-9.-]+)/(?P<version>v[0-9a-z]+))"
    r"(?:/namespaces/(?P<namespace>[^/]+))?"
    r"/(?P<plural>[a-z]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>status|log))?)?$"
)
_NAMESPACE_ITEM = re.compile(r"^/api/v1/namespaces/(?P<name>[^/]+)(?:/(?P<sub>status))?$")

DCGM_PATH = "/dcgm/metrics"
"""Where the simulated DCGM exporter answers (a real one serves `/metrics` on port 9400)."""

VERSION = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.0-remotegpu-sim",
    "platform": "linux/amd64",
    "goVersion": "go1.22",
    "compiler": "gc",
    "buildDate": "2026-11-24T00:00:00Z",
    "gitCommit": "0000000",
    "gitTreeState": "clean",
}


def _resource_list(group_version: str) -> Obj:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": [
            {
                "name": r.plural,
                "singularName": r.kind.lower(),
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": list(r.verbs),
                "shortNames": list(r.short_names),
            }
            for r in RESOURCES
            if r.api_version == group_version
        ]
        + [
            {
                "name": f"{r.plural}/status",
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["get", "patch", "update"],
            }
            for r in RESOURCES
            if r.api_version == group_version and r.plural in {"pods", "nodes"}
        ],
    }


def _groups() -> Obj:
    """Every API group with the kinds the simulated cluster serves (one version each)."""
    groups = sorted({(r.group, r.version) for r in RESOURCES if r.group})
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group(group, version) for group, version in groups],
    }


def _group(group: str, version: str) -> Obj:
    group_version = {"groupVersion": f"{group}/{version}", "version": version}
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": [group_version],
        "preferredVersion": group_version,
    }


_GROUPS = _groups()
_DISCOVERY: dict[str, Any] = {
    "/apis": _GROUPS,
    **{f"/apis/{g['name']}": g for g in _GROUPS["groups"]},
    **{
        f"/apis/{g['preferredVersion']['groupVersion']}": _resource_list(
            g["preferredVersion"]["groupVersion"]
        )
        for g in _GROUPS["groups"]
    },
}


Access = tuple[str, str, str, str | None]
"""(verb, API group, resource or resource/subresource, namespace; None for cluster-wide requests)."""


def _verb(method: str, item: bool, query: dict[str, str]) -> str:
    """The RBAC verb of a request, as the API server's authorizer names it."""
    if method == "GET":
        if item:
            return "get"
        return "watch" if query.get("watch") in {"1", "true"} else "list"
    return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
        method, method.lower()
    )


def _openapi(path: str) -> Obj:
    """The OpenAPI v3 index or one group version's document (v2 and unknown ones: 404)."""
    if path == "/openapi/v3":
        return openapi.index()
    document = (
        openapi.group_version_document(path.removeprefix("/openapi/v3/"))
        if path.startswith("/openapi/v3/")
        else None
    )
    if document is None:
        raise ApiError(
            404, "NotFound", f"the simulated cluster serves OpenAPI v3 only, without schemas ({path})"
        )
    return document


class SimulatedApiServer(ThreadingHTTPServer):
    """The HTTP server, holding the store, the kubelets and the faults."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients closing idle keep-alive connections is normal; anything else is printed."""
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def __init__(self, address: tuple[str, int], store: Store, kubelets: Kubelets, faults: Faults) -> None:
        super().__init__(address, _Handler)
        self.store, self.kubelets, self.faults = store, kubelets, faults
        self.closing = threading.Event()
        self.rng = random.Random(7)
        self.access: set[Access] = set()
        """Every distinct (verb, API group, resource[/subresource], namespace or None) requested, as an
        RBAC authorizer sees it: what a client's Role must grant (a set, so it stays small)."""
        self._access_lock = threading.Lock()

    def record(self, access: Access) -> None:
        """Remember one request's access (thread-safe)."""
        with self._access_lock:
            self.access.add(access)

    def accesses(self, *, forget: bool = False) -> set[Access]:
        """What was recorded (and, with `forget`, start afresh)."""
        with self._access_lock:
            seen = set(self.access)
            if forget:
                self.access.clear()
            return seen


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    """TCP_NODELAY, as Go's net/http sets it: otherwise a small response written after its headers
    waits for the client's delayed ACK (about 40 ms on Linux) on every keep-alive request."""
    server: SimulatedApiServer

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # -- routing ----------------------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        url = urlparse(self.path)
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        body = self._body()
        if method == "GET" and url.path == DCGM_PATH:
            text = dcgm.render(self.server.store, self.server.faults.gpu_utilisation)
            self._respond(200, "text/plain; version=0.0.4; charset=utf-8", text.encode())
            return
        try:
            self._inject_faults()
            self._route(method, url.path.rstrip("/") or "/", query, body)
        except ApiError as error:
            self._json(error.code, error.status())
        except ValueError as error:
            self._json(400, ApiError(400, "BadRequest", str(error)).status())
        except (BrokenPipeError, ConnectionResetError):
            return

    def _route(self, method: str, path: str, query: dict[str, str], body: Any) -> None:
        static = {
            "/version": VERSION,
            "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
            "/api/v1": _resource_list("v1"),
            **_DISCOVERY,
            "/healthz": "ok",
            "/readyz": "ok",
            "/livez": "ok",
        }
        if method == "GET" and path in static:
            content = static[path]
            if isinstance(content, str):
                self._text(200, content)
            else:
                self._json(200, content)
            return
        if method == "GET" and path.startswith("/openapi"):
            self._json(200, _openapi(path))
            return
        if match := _NAMESPACE_ITEM.match(path):
            plural = "namespaces/status" if match["sub"] else "namespaces"
            self.server.record((_verb(method, True, query), "", plural, None))
            self._item(
                method, BY_PATH[("", "v1", "namespaces")], None, match["name"], match["sub"], query, body
            )
            return
        match = _PATH.match(path)
        if match is None:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
        group, version = ("", "v1") if match["core"] else (match["group"], match["version"])
        resource = BY_PATH.get((group, version, match["plural"]))
        if resource is None:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
        namespace = match["namespace"]
        if resource.namespaced is False and namespace:
            raise ApiError(404, "NotFound", f"{resource.plural} are not namespaced")
        plural = f"{resource.plural}/{match['sub']}" if match["sub"] else resource.plural
        self.server.record((_verb(method, match["name"] is not None, query), group, plural, namespace))
        if match["name"] is None:
            self._collection(method, resource, namespace, query, body)
        else:
            self._item(method, resource, namespace, match["name"], match["sub"], query, body)

    def _collection(
        self, method: str, resource: Resource, namespace: str | None, query: dict[str, str], body: Any
    ) -> None:
        store = self.server.store
        if method == "POST":
            if not isinstance(body, dict):
                raise ApiError(400, "BadRequest", "the request body must be a JSON object")
            if query.get("dryRun") == "All":
                self._json(201, body)
                return
            self._json(
                201,
                store.create(
                    resource, namespace or body.get("metadata", {}).get("namespace") or "default", body
                ),
            )
            return
        if method != "GET":
            raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on a collection")
        labels, fields = (
            label_selector(query.get("labelSelector")),
            field_selector(query.get("fieldSelector")),
        )
        matches = lambda obj: labels(obj) and fields(obj)  # noqa: E731 - a tiny closure reads best here
        if query.get("watch") in {"1", "true"}:
            since = (
                int(query["resourceVersion"]) if query.get("resourceVersion") not in (None, "", "0") else None
            )
            self._watch(resource, namespace, matches, since, float(query.get("timeoutSeconds", "300")))
            return
        items, version = store.list(resource, namespace, matches, shared=True)
        accept = self.headers.get("Accept") or ""
        if "as=Table" in accept:
            self._json(200, table(resource, items, version))
            return
        if "as=PartialObjectMetadataList" in accept:
            self._json(200, partial_metadata_list(items, version))
            return
        self._json(
            200,
            {
                "kind": f"{resource.kind}List",
                "apiVersion": resource.api_version,
                "metadata": {"resourceVersion": str(version)},
                "items": items,
            },
        )

    def _item(
        self,
        method: str,
        resource: Resource,
        namespace: str | None,
        name: str,
        sub: str | None,
        query: dict[str, str],
        body: Any,
    ) -> None:
        store = self.server.store
        if sub == "log":
            _refuse_unstarted(store.get(resource, namespace, name))
            key = (namespace or "", name)
            tail = int(query["tailLines"]) if query.get("tailLines") else None
            if query.get("follow") in {"1", "true"}:
                self._follow_log(resource, key, tail)
                return
            lines = self.server.kubelets.log_lines(key)
            self._text(200, "".join(f"{line}\n" for line in _tail(lines, tail)))
            return
        if method == "GET":
            found = store.get(resource, namespace, name)
            if "as=Table" in (self.headers.get("Accept") or ""):
                self._json(200, table(resource, [found], store.resource_version))
                return
            self._json(200, found)
        elif method == "PUT":
            self._json(200, store.replace(resource, namespace, name, body))
        elif method == "PATCH":
            if isinstance(body, list):
                raise ApiError(415, "UnsupportedMediaType", "JSON patch is not supported; use a merge patch")
            self._json(200, store.patch(resource, namespace, name, body))
        elif method == "DELETE":
            deleted = store.delete(resource, namespace, name)
            self._json(200, deleted)
        else:
            raise ApiError(405, "MethodNotAllowed", f"{method} is not supported")

    # -- watch ------------------------------------------------------------------------------------
    def _watch(
        self, resource: Resource, namespace: str | None, matches: Any, since: int | None, timeout_s: float
    ) -> None:
        store = self.server.store
        subscription = store.watch(resource, namespace, matches, since, served=True)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and not self.server.closing.is_set():
                try:
                    event = subscription.events.get(timeout=0.5)
                except queue.Empty:
                    continue
                if event is None:
                    break
                self._chunk(msgspec.json.encode(event) + b"\n")
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            store.unwatch(subscription)
            self.close_connection = True

    # -- log ----------------------------------------------------------------------------------------
    def _follow_log(self, pods: Resource, key: tuple[str, str], tail: int | None) -> None:
        """The log so far (its last `tail` lines), then each new line as it is written."""
        kubelets = self.server.kubelets
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            lines = kubelets.log_lines(key)
            sent = len(lines)
            if _tail(lines, tail):  # an empty chunk would end the body
                self._chunk("".join(f"{line}\n" for line in _tail(lines, tail)).encode())
            while not self.server.closing.is_set():
                lines = kubelets.log_lines(key, sent, wait_s=0.25)
                if lines:
                    self._chunk("".join(f"{line}\n" for line in lines).encode())
                    sent += len(lines)
                elif self._client_gone() or _ended(self.server.store, pods, key):
                    break
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            self.close_connection = True

    def _client_gone(self) -> bool:
        """Whether the client closed its end (an idle stream notices nothing until it writes)."""
        readable, _, _ = select.select([self.connection], [], [], 0)
        if not readable:
            return False
        try:
            peeked: bytes = self.connection.recv(1, socket.MSG_PEEK)
        except OSError:
            return True
        return peeked == b""

    # -- I/O --------------------------------------------------------------------------------------
    def _inject_faults(self) -> None:
        faults = self.server.faults
        if faults.slow_ms:
            time.sleep(faults.slow_ms / 1000)
        if faults.next_5xx > 0:
            faults.next_5xx -= 1
            raise ApiError(
                503, "ServiceUnavailable", "the server is currently unable to handle the request (injected)"
            )
        if faults.error_rate_5xx and self.server.rng.random() < faults.error_rate_5xx:
            raise ApiError(
                500, "InternalError", "an error on the server has prevented the request (injected)"
            )

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if not length:
            return None
        raw = self.rfile.read(length)
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return None

    def _json(self, code: int, payload: Any) -> None:
        self._respond(code, "application/json", msgspec.json.encode(payload))

    def _text(self, code: int, payload: str) -> None:
        self._respond(code, "text/plain", payload.encode())

    def _respond(self, code: int, content_type: str, data: bytes) -> None:
        """Status line, headers and body in one write (one TCP segment for a small answer)."""
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self._headers_buffer.append(b"\r\n" + data)  # type: ignore[attr-defined]
        self.flush_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


def _tail(lines: list[str], tail: int | None) -> list[str]:
    return lines if tail is None else lines[max(len(lines) - tail, 0) :]


def _refuse_unstarted(pod: Obj) -> None:
    """The kubelet has no log of a container that never started (not yet created, pulling its image)."""
    statuses = pod.get("status", {}).get("containerStatuses") or [
        {"name": c.get("name"), "state": {"waiting": {"reason": "ContainerCreating"}}}
        for c in pod.get("spec", {}).get("containers", [])[:1]
    ]
    for status in statuses:
        waiting = status.get("state", {}).get("waiting")
        if waiting and not status.get("lastState", {}).get("terminated"):
            raise ApiError(
                400,
                "BadRequest",
                f'container "{status.get("name")}" in pod "{pod["metadata"]["name"]}" is waiting to start: '
                f"{waiting.get('reason', 'ContainerCreating')}",
            )


def _ended(store: Store, pods: Resource, key: tuple[str, str]) -> bool:
    try:
        pod = store.get(pods, *key)
    except ApiError:
        return True
    return pod.get("status", {}).get("phase") in {"Succeeded", "Failed"}
