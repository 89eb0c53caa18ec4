"""A token endpoint for a token-auth registry (distribution's `docs/spec/auth/token.md` and `jwt.md`), and
a registry that trusts it.

The endpoint authenticates the client with Basic credentials (anonymous without), grants the intersection
of the scopes asked for and what the user may do (`pull` and/or `push` on every repository, `*` on the
catalog for those marked so), and answers `{"token", "access_token", "expires_in", "issued_at"}`. Its JWTs
are what Distribution 2.8's `registry/auth/token` verifies: ES256, `iss`/`aud` (the service) matching the
registry's `auth.token` configuration, `exp`/`nbf`/`iat`, an `access` claim of `{type, name, actions}`,
and an `x5c` header holding a self-signed certificate that is also the registry's `rootcertbundle`.

Fixture: `token_registry` (one per module): the registry and its endpoint, with a reader (`pull` and the
catalog) and a pusher (`pull,push`).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from remotegpu.core.registry.auth import RegistryCredentials
from remotegpu.core.registry.tokens import TokenAuth
from remotegpu.ops.fakes.served import ServedFake
from remotegpu.tests.registry_world import RunningRegistry, TokenAuthConfig, running_registry

SERVICE = "remotegpu-test-registry"
ISSUER = "remotegpu-test-token-issuer"


@dataclass
class TokenUser:
    password: str = field(repr=False)
    actions: frozenset[str]
    catalog: bool


class TokenEndpoint(ServedFake):
    """`GET /token` on 127.0.0.1; `issued` lists the scopes of every token given, `refused` counts the
    refusals; `fail_next(n)` answers the next requests 503."""

    def __init__(self, *, expires_in: int = 300) -> None:
        self.expires_in = expires_in
        self.users: dict[str, TokenUser] = {}
        self.issued: list[tuple[str, ...]] = []
        self.tokens: list[str] = []
        self.refused = 0
        self._faults = 0
        self._lock = threading.Lock()
        self._key = ec.generate_private_key(ec.SECP256R1())
        self.certificate = _self_signed(self._key)
        self._serve(_TokenHandler, 0, endpoint=self)
        self._base_path = "/token"

    def add_user(self, name: str, actions: set[str], *, catalog: bool = False) -> RegistryCredentials:
        password = secrets.token_urlsafe(18)
        self.users[name] = TokenUser(password, frozenset(actions), catalog)
        return RegistryCredentials(name, password)

    def fail_next(self, count: int) -> None:
        with self._lock:
            self._faults += count

    def write_bundle(self, path: Path) -> Path:
        path.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))
        return path

    def answer(self, query: dict[str, list[str]], authorization: str | None) -> tuple[int, dict[str, Any]]:
        with self._lock:
            if self._faults:
                self._faults -= 1
                return 503, {"errors": [{"code": "UNAVAILABLE", "message": "injected fault"}]}
            user = self._authenticate(authorization)
            if user is None:
                self.refused += 1
                return 401, {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}
            if query.get("service", [""])[0] != SERVICE:
                return 400, {"errors": [{"code": "DENIED", "message": "unknown service"}]}
            name, granted = user
            access = [a for s in query.get("scope", []) if (a := _grant(s, granted))]
            self.issued.append(tuple(query.get("scope", [])))
            token = self._sign(name, access)
            self.tokens.append(token)
            now = dt.datetime.now(dt.UTC)
            return 200, {
                "token": token,
                "access_token": token,
                "expires_in": self.expires_in,
                "issued_at": now.isoformat().replace("+00:00", "Z"),
            }

    def _authenticate(self, authorization: str | None) -> tuple[str, TokenUser | None] | None:
        """(name, user); ("", None): anonymous; None: refused."""
        if not authorization:
            return "", None
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            return None
        name, _, password = base64.b64decode(encoded).decode().partition(":")
        user = self.users.get(name)
        if user is None or not secrets.compare_digest(user.password, password):
            return None
        return name, user

    def _sign(self, subject: str, access: list[dict[str, Any]]) -> str:
        now = int(dt.datetime.now(dt.UTC).timestamp())
        claims = {
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": now + self.expires_in,
            "nbf": now - 1,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        headers = {"typ": "JWT", "x5c": [base64.b64encode(der).decode()]}
        return jwt.encode(claims, self._key, algorithm="ES256", headers=headers)


def _grant(scope: str, user: TokenUser | None) -> dict[str, Any] | None:
    """`type:name:actions` intersected with what `user` may do; None when nothing is granted."""
    kind, _, rest = scope.partition(":")
    name, _, wanted = rest.rpartition(":")
    if user is None:
        return None
    if kind == "registry" and name == "catalog":
        actions = ["*"] if user.catalog and "*" in wanted.split(",") else []
    elif kind == "repository":
        actions = [a for a in wanted.split(",") if a in user.actions]
    else:
        actions = []
    return {"type": kind, "name": name, "actions": actions} if actions else None


def _self_signed(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


class _TokenHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        endpoint: TokenEndpoint = self.server.endpoint  # type: ignore[attr-defined]
        split = urlsplit(self.path)
        if split.path != "/token":
            status, body = 404, {"errors": [{"code": "NOT_FOUND", "message": "not found"}]}
        else:
            status, body = endpoint.answer(parse_qs(split.query), self.headers.get("Authorization"))
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="token"')
        self.end_headers()
        self.wfile.write(data)


@dataclass
class TokenRegistry:
    """A token-auth registry, its endpoint, and two users of it."""

    registry: RunningRegistry
    endpoint: TokenEndpoint
    reader: RegistryCredentials
    """`pull` on every repository and the catalog."""
    writer: RegistryCredentials
    """`pull,push` on every repository."""

    @property
    def url(self) -> str:
        return self.registry.url

    def push_auth(self) -> httpx.Auth:
        """Auth for `ImagePusher`: the writer's tokens, fetched the way the client fetches them."""
        return TokenAuth(self.writer)


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenRegistry]:
    workdir = tmp_path_factory.mktemp("token-registry")
    with TokenEndpoint() as endpoint:
        reader = endpoint.add_user("reader", {"pull"}, catalog=True)
        writer = endpoint.add_user("writer", {"pull", "push"})
        config = TokenAuthConfig(
            realm=endpoint.url,
            service=SERVICE,
            issuer=ISSUER,
            rootcertbundle=endpoint.write_bundle(workdir / "token-root.pem"),
        )
        with running_registry(workdir, token_auth=config) as registry:
            yield TokenRegistry(registry, endpoint, reader, writer)
