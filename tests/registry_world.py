"""A real registry for the tests: Debian's `docker-registry` (Distribution 2.8) on loopback, and images
pushed into it through the registry's HTTP API.

`running_registry(workdir)` starts one with a generated configuration: filesystem storage under
`workdir`, `storage.delete.enabled: true` (2.8 removes a tag only by deleting its manifest by digest), and
htpasswd auth for one user (bcrypt at the lowest cost, so each request's password check stays cheap), or
the token auth a `TokenAuthConfig` describes. The tests fail, never skip, where the binary is missing
(`apt-get install -y docker-registry`; `.ci/run` installs it).

`ImagePusher` pushes what a `docker push` would: a config blob, a layer, an image manifest (OCI or
Docker v2 schema 2), an index of two platforms; retags (the same manifest PUT under another tag) and
deletes a manifest by digest.

`FlakyProxy` stands in front of a registry and answers the next requests with a 503, a 429 or a dropped
connection on demand, for the temporary failures.

Fixtures (import them into a test module and name them in its `__all__`): `registry` (one registry per
module, with htpasswd auth), `pusher` (an `ImagePusher` on it) and `flaky_registry` (a `FlakyProxy` to it). Each test pushes to repositories of its
own (`unique_repository()`), so tests sharing the module's registry do not see each other's tags.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import socket
import subprocess
import threading
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from remotegpu.core.registry import manifests
from remotegpu.ops.fakes.served import ServedFake

with warnings.catch_warnings():
    # Deprecated since 3.11, present through 3.12: the one bcrypt here without a new dependency.
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt

REGISTRY_BINARY = "/usr/bin/docker-registry"
START_DEADLINE = 15.0
LAYER_MEDIA_TYPES = {
    manifests.OCI_MANIFEST: "application/vnd.oci.image.layer.v1.tar+gzip",
    manifests.DOCKER_MANIFEST: "application/vnd.docker.image.rootfs.diff.tar.gzip",
}
CONFIG_MEDIA_TYPES = {
    manifests.OCI_MANIFEST: "application/vnd.oci.image.config.v1+json",
    manifests.DOCKER_MANIFEST: "application/vnd.docker.container.image.v1+json",
}
INDEX_FOR = {manifests.OCI_MANIFEST: manifests.OCI_INDEX, manifests.DOCKER_MANIFEST: manifests.DOCKER_LIST}
TWO_PLATFORMS = (("linux", "amd64"), ("linux", "arm64"))


@dataclass(frozen=True)
class TokenAuthConfig:
    """Distribution's `auth.token` section: where clients get tokens and whose signatures it trusts."""

    realm: str
    service: str
    issuer: str
    rootcertbundle: Path


@dataclass
class RunningRegistry:
    """A started `docker-registry`: its URL, its `host:port` and the htpasswd user (if any)."""

    url: str
    host: str
    root: Path
    process: subprocess.Popen[bytes]
    username: str = "pusher"
    password: str = field(default="", repr=False)
    log_path: Path | None = None

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def free_port() -> int:
    """A port free on 127.0.0.1 now (the registry binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def htpasswd_line(username: str, password: str) -> str:
    """`user:$2b$04$…`: bcrypt at cost 4, the lowest Distribution accepts, so tests stay quick."""
    hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
    assert hashed, "this libc's crypt() has no bcrypt"
    assert hashed.startswith("$2"), "this libc's crypt() has no bcrypt"
    return f"{username}:{hashed}"


def registry_config(root: Path, port: int, auth: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(root / "data")},
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},
        },
        "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
        "auth": auth,
    }


@contextlib.contextmanager
def running_registry(
    workdir: Path, *, token_auth: TokenAuthConfig | None = None, username: str = "pusher"
) -> Iterator[RunningRegistry]:
    """A registry on a free loopback port until the block ends (then stopped, its files left in
    `workdir`); htpasswd auth for `username` with a random password unless `token_auth` is given."""
    if not os.access(REGISTRY_BINARY, os.X_OK):
        pytest.fail(f"{REGISTRY_BINARY} is missing: apt-get install -y docker-registry", pytrace=False)
    workdir.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(18)
    if token_auth is None:
        (workdir / "htpasswd").write_text(htpasswd_line(username, password) + "\n")
        auth: dict[str, Any] = {"htpasswd": {"realm": "remotegpu-tests", "path": str(workdir / "htpasswd")}}
    else:
        auth = {
            "token": {
                "realm": token_auth.realm,
                "service": token_auth.service,
                "issuer": token_auth.issuer,
                "rootcertbundle": str(token_auth.rootcertbundle),
            }
        }
    port = free_port()
    config = workdir / "config.yml"
    config.write_text(yaml.safe_dump(registry_config(workdir, port, auth)))
    log_path = workdir / "registry.log"
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [REGISTRY_BINARY, "serve", str(config)], stdout=log_file, stderr=subprocess.STDOUT
        )
    registry = RunningRegistry(
        url=f"http://127.0.0.1:{port}",
        host=f"127.0.0.1:{port}",
        root=workdir,
        process=process,
        username=username,
        password=password,
        log_path=log_path,
    )
    try:
        _wait_until_answering(registry)
        yield registry
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _wait_until_answering(registry: RunningRegistry) -> None:
    deadline = time.monotonic() + START_DEADLINE
    while time.monotonic() < deadline:
        if registry.process.poll() is not None:
            pytest.fail(f"docker-registry exited at start:\n{registry.log_tail()}", pytrace=False)
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{registry.url}/v2/", timeout=1).status_code in (200, 401):
                return
        time.sleep(0.05)
    pytest.fail(f"docker-registry did not answer within {START_DEADLINE} s:\n{registry.log_tail()}")


def unique_repository(project: str = "ml") -> str:
    """A repository name no other test uses: `<project>/img-<8 hex>`."""
    return f"{project}/img-{uuid.uuid4().hex[:8]}"


# -- pushing --------------------------------------------------------------------------------------
def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class PushedImage:
    """A manifest (or index) in the registry: its digest, media type, and the size a client should
    report (config plus layers; an index's largest platform)."""

    repository: str
    digest: str
    media_type: str
    size_bytes: int
    children: tuple[PushedImage, ...] = ()


class ImagePusher:
    """Pushes through the registry's HTTP API as `docker push` does (blob uploads, manifest PUTs)."""

    def __init__(self, url: str, auth: httpx.Auth) -> None:
        self._client = httpx.Client(base_url=url, auth=auth, timeout=30)

    def close(self) -> None:
        self._client.close()

    def blob(self, repository: str, data: bytes, media_type: str) -> dict[str, Any]:
        """Upload `data` (monolithic: POST then PUT with the digest); its descriptor."""
        digest = _digest(data)
        started = self._client.post(f"/v2/{repository}/blobs/uploads/")
        assert started.status_code == 202, started.text
        location = httpx.URL(started.headers["Location"])
        upload = location.copy_merge_params({"digest": digest})
        done = self._client.put(
            str(upload), content=data, headers={"Content-Type": "application/octet-stream"}
        )
        assert done.status_code == 201, done.text
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def put_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> str:
        """PUT a manifest under a tag or its digest; the digest the registry names it by."""
        answer = self._client.put(
            f"/v2/{repository}/manifests/{reference}", content=body, headers={"Content-Type": media_type}
        )
        assert answer.status_code == 201, answer.text
        digest = answer.headers["Docker-Content-Digest"]
        assert digest == _digest(body)
        return digest

    def image(
        self,
        repository: str,
        tag: str | None,
        *,
        media_type: str = manifests.OCI_MANIFEST,
        platform: tuple[str, str] = ("linux", "amd64"),
        layer_size: int = 1024,
    ) -> PushedImage:
        """A config and one layer of random bytes (so each push is a new digest) and their manifest,
        under `tag` (None: by digest only, as an index's platform manifests are)."""
        layer = self.blob(repository, os.urandom(layer_size), LAYER_MEDIA_TYPES[media_type])
        os_name, architecture = platform
        config_body = json.dumps(
            {
                "architecture": architecture,
                "os": os_name,
                "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},
                "config": {"Labels": {"remotegpu.test": uuid.uuid4().hex}},
            }
        ).encode()
        config = self.blob(repository, config_body, CONFIG_MEDIA_TYPES[media_type])
        body = json.dumps(
            {"schemaVersion": 2, "mediaType": media_type, "config": config, "layers": [layer]}
        ).encode()
        digest = self.put_manifest(repository, tag or _digest(body), body, media_type)
        return PushedImage(repository, digest, media_type, config["size"] + layer["size"])

    def index(
        self,
        repository: str,
        tag: str,
        *,
        media_type: str = manifests.OCI_MANIFEST,
        platforms: Sequence[tuple[str, str]] = TWO_PLATFORMS,
        layer_sizes: Sequence[int] = (1024, 4096),
    ) -> PushedImage:
        """One image per platform (pushed by digest), then the index naming them, under `tag`."""
        children = tuple(
            self.image(repository, None, media_type=media_type, platform=platform, layer_size=size)
            for platform, size in zip(platforms, layer_sizes, strict=True)
        )
        index_type = INDEX_FOR[media_type]
        entries = [
            {
                "mediaType": child.media_type,
                "digest": child.digest,
                "size": len(self.manifest(repository, child.digest)[0]),
                "platform": {"os": os_name, "architecture": architecture},
            }
            for child, (os_name, architecture) in zip(children, platforms, strict=True)
        ]
        body = json.dumps({"schemaVersion": 2, "mediaType": index_type, "manifests": entries}).encode()
        digest = self.put_manifest(repository, tag, body, index_type)
        return PushedImage(repository, digest, index_type, max(c.size_bytes for c in children), children)

    def manifest(self, repository: str, reference: str) -> tuple[bytes, str]:
        """The manifest's exact bytes and media type."""
        answer = self._client.get(
            f"/v2/{repository}/manifests/{reference}", headers={"Accept": manifests.ACCEPT}
        )
        assert answer.status_code == 200, answer.text
        return answer.content, answer.headers["Content-Type"]

    def retag(self, repository: str, reference: str, tag: str) -> str:
        """Point `tag` at the manifest `reference` names (the same bytes PUT under the tag)."""
        body, media_type = self.manifest(repository, reference)
        return self.put_manifest(repository, tag, body, media_type)

    def delete_manifest(self, repository: str, digest: str) -> None:
        """Delete a manifest by digest, which in 2.8 also removes every tag naming it."""
        answer = self._client.delete(f"/v2/{repository}/manifests/{digest}")
        assert answer.status_code == 202, answer.text


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    """One registry with htpasswd auth for the test module."""
    with running_registry(tmp_path_factory.mktemp("registry")) as started:
        yield started


@pytest.fixture
def pusher(registry: RunningRegistry) -> Iterator[ImagePusher]:
    """Pushes into `registry` as its htpasswd user."""
    pushing = ImagePusher(registry.url, httpx.BasicAuth(registry.username, registry.password))
    try:
        yield pushing
    finally:
        pushing.close()


# -- faults ---------------------------------------------------------------------------------------
class FlakyProxy(ServedFake):
    """A pass-through proxy to a registry that answers the next requests with a fault on demand:
    `fail_next(n, 503)` (or 429, …), or `fail_next(n, None)` to drop the connection unanswered."""

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.requests = 0
        self._faults: list[int | None] = []
        self._lock = threading.Lock()
        self._upstream = httpx.Client(timeout=30)
        self._serve(_ProxyHandler, 0, proxy=self)

    @property
    def host(self) -> str:
        return self.url.removeprefix("http://")

    def fail_next(self, count: int, status: int | None = 503) -> None:
        with self._lock:
            self._faults.extend([status] * count)

    def _fault(self) -> tuple[bool, int | None]:
        with self._lock:
            self.requests += 1
            return (True, self._faults.pop(0)) if self._faults else (False, None)

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self._upstream.close()


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _forward(self) -> None:
        proxy: FlakyProxy = self.server.proxy  # type: ignore[attr-defined]
        faulted, status = proxy._fault()
        if faulted and status is None:
            self.close_connection = True
            return
        if faulted:
            body = json.dumps({"errors": [{"code": "UNAVAILABLE", "message": "injected fault"}]}).encode()
            self.send_response(int(status or 503))
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            return
        length = int(self.headers.get("Content-Length") or 0)
        sent = {k: v for k, v in self.headers.items() if k.lower() not in {"host", "content-length"}}
        answer = proxy._upstream.request(
            self.command, proxy.target + self.path, headers=sent, content=self.rfile.read(length)
        )
        self.send_response(answer.status_code)
        for key, value in answer.headers.multi_items():
            if key.lower() not in {"content-length", "transfer-encoding", "connection", "content-encoding"}:
                self.send_header(key, value)
        length_sent = answer.headers.get("Content-Length", "0") if self.command == "HEAD" else None
        self.send_header("Content-Length", length_sent or str(len(answer.content)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.content)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _forward  # noqa: N815 - http.server's names


@pytest.fixture
def flaky_registry(registry: RunningRegistry) -> Iterator[FlakyProxy]:
    """`registry` behind a proxy whose next answers can be made faults."""
    with FlakyProxy(registry.url) as proxy:
        yield proxy
