"""A contract fake of HashiCorp Vault over real HTTP: KV v2, tokens, AppRole, sealing.

It follows Vault's published HTTP API (`website/content/api-docs/` in hashicorp/vault: `secret/kv/kv-v2`,
`auth/approle`, `auth/token`, `system/health`, `system/seal`, `system/unseal`) closely enough that
`hvac` talks to it unchanged: the `X-Vault-Token` header, answers wrapped in `{"data": …}` or
`{"auth": …}`, `LIST` (or `GET ?list=true`), and Vault's error answers — 403 `permission denied` for a
missing, unknown or expired token or a path outside the token's policy, 404 `{"errors": []}` for a missing
secret, 400 for a bad AppRole login or a CAS mismatch, 503 `Vault is sealed`. A request it does not
implement is answered as Vault answers an unknown route (404) and recorded in `unexpected`, which tests
check is empty.

Tokens expire by the clock it is given (`core.platform.clock.now` unless told), so tests can move time.
`remotegpu dev --secrets vault` runs one; tests start their own on a free port.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from remotegpu.core.platform import clock
from remotegpu.ops.fakes.served import ServedFake
from remotegpu.ops.fakes.vault_kv import Error, KeyValueEngine, rfc3339

PERMISSION_DENIED = Error(403, ("permission denied",))
SEALED = Error(503, ("Vault is sealed",))


@dataclass
class FakeToken:
    """A token the fake issued; tests read `renewals` and `expires_at`."""

    id: str
    policies: list[str]
    ttl: dt.timedelta
    """Lifetime granted at login and on each renewal; zero: never expires (the root token)."""
    renewable: bool
    issued: dt.datetime
    path: str
    paths: tuple[str, ...] | None = None
    """KV paths (prefixes below the mount) the token's policy allows; None: all."""
    expires_at: dt.datetime | None = None
    renewals: int = 0
    accessor: str = field(default_factory=lambda: secrets.token_hex(12))

    def live(self, now: dt.datetime) -> bool:
        return self.expires_at is None or now < self.expires_at

    def allows(self, path: str) -> bool:
        return self.paths is None or any(path.startswith(prefix) for prefix in self.paths)


@dataclass(frozen=True)
class _AppRole:
    role_name: str
    secret_id: str
    token_ttl: dt.timedelta
    paths: tuple[str, ...] | None


class FakeVault(ServedFake):
    """A Vault server on 127.0.0.1 holding one KV v2 mount; use as a context manager."""

    def __init__(
        self,
        *,
        mount: str = "secret",
        port: int = 0,
        now: Callable[[], dt.datetime] = clock.now,
    ) -> None:
        self.mount = mount
        self.now = now
        self.kv = KeyValueEngine()
        self.sealed = False
        self.unseal_key = secrets.token_urlsafe(24)
        self.unexpected: list[str] = []
        self._tokens: dict[str, FakeToken] = {}
        self._roles: dict[str, _AppRole] = {}
        self._lock = threading.Lock()
        self.root_token = self.issue_token(ttl=dt.timedelta(0), renewable=False, policies=["root"])
        self._serve(_Handler, port, vault=self)

    def issue_token(
        self,
        *,
        ttl: dt.timedelta = dt.timedelta(hours=1),
        renewable: bool = True,
        policies: list[str] | None = None,
        paths: tuple[str, ...] | None = None,
        path: str = "auth/token/create",
    ) -> str:
        """A new token (as `vault token create` makes one); `paths` limits it to those KV prefixes."""
        now = self.now()
        token = FakeToken(
            id="hvs." + secrets.token_urlsafe(24),
            policies=policies or ["default"],
            ttl=ttl,
            renewable=renewable,
            issued=now,
            path=path,
            paths=paths,
            expires_at=now + ttl if ttl else None,
        )
        with self._lock:
            self._tokens[token.id] = token
        return token.id

    def add_approle(
        self,
        role_name: str,
        *,
        token_ttl: dt.timedelta = dt.timedelta(hours=1),
        paths: tuple[str, ...] | None = None,
    ) -> tuple[str, str]:
        """Create an AppRole; returns its (role_id, secret_id)."""
        role_id, secret_id = str(uuid.uuid4()), str(uuid.uuid4())
        with self._lock:
            self._roles[role_id] = _AppRole(role_name, secret_id, token_ttl, paths)
        return role_id, secret_id

    def token(self, token_id: str) -> FakeToken:
        with self._lock:
            return self._tokens[token_id]

    def tokens_of(self, path: str) -> list[FakeToken]:
        """The tokens issued by `path` (e.g. `auth/approle/login`), oldest first."""
        with self._lock:
            return [token for token in self._tokens.values() if token.path == path]

    def seal(self) -> None:
        self.sealed = True

    def unseal(self) -> None:
        self.sealed = False

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        """One request: returns (status, JSON body or None)."""
        split = urlsplit(target)
        path = split.path.removeprefix("/v1/").strip("/")
        query = {key: values[-1] for key, values in parse_qs(split.query).items()}
        if method == "GET" and query.get("list") == "true":
            method = "LIST"
        try:
            payload = json.loads(body) if body.strip() else {}
        except ValueError:
            return _error(Error(400, ("failed to parse JSON input",)))
        with self._lock:
            answer = self._route(method, path, query, headers, payload if isinstance(payload, dict) else {})
        if isinstance(answer, Error):
            return _error(answer)
        status, data = answer
        return status, data

    def _route(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: dict[str, Any]
    ) -> tuple[int, Any] | Error:
        now = self.now()
        unsealed = self._unsealed_route(method, path, body)
        if unsealed is not None:
            return unsealed
        if self.sealed:
            return SEALED
        if path == "auth/approle/login" and method in {"PUT", "POST"}:
            return self._approle_login(body, now)
        token = self._tokens.get(_token_of(headers))
        if token is None or not token.live(now):
            return PERMISSION_DENIED
        if path == "sys/seal" and method in {"PUT", "POST"}:
            if "root" not in token.policies:
                return PERMISSION_DENIED
            self.sealed = True
            return 204, None
        if path == "auth/token/lookup-self" and method == "GET":
            return 200, _wrap(data=_lookup(token, now))
        if path == "auth/token/renew-self" and method in {"PUT", "POST"}:
            return self._renew(token, body, now)
        mount, _, rest = path.partition("/")
        kind, _, key = rest.partition("/")
        if mount != self.mount or kind not in {"data", "metadata", "delete", "undelete", "destroy"}:
            return self._unexpected(method, path)
        if not token.allows(key):
            return PERMISSION_DENIED
        return self._kv(method, kind, key, query, body, now)

    def _unsealed_route(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any] | Error | None:
        """The routes that answer without a token, also while sealed; None for every other route."""
        if path == "sys/health" and method in {"GET", "HEAD"}:
            return (503 if self.sealed else 200), self._health()
        if path == "sys/seal-status" and method == "GET":
            return 200, self._seal_status()
        if path == "sys/unseal" and method in {"PUT", "POST"}:
            if body.get("key") != self.unseal_key:
                return Error(400, ("Unseal failed, invalid key",))
            self.sealed = False
            return 200, self._seal_status()
        return None

    def _kv(
        self, method: str, kind: str, key: str, query: dict[str, str], body: dict[str, Any], now: dt.datetime
    ) -> tuple[int, Any] | Error:
        answer: tuple[int, Any] | Error
        if kind == "data" and method == "GET" and key:
            answer = self.kv.read(key, int(query.get("version") or 0), now)
        elif kind == "data" and method in {"POST", "PUT"} and key:
            answer = self.kv.write(key, body, now)
        elif kind == "data" and method == "DELETE" and key:
            answer = self.kv.delete_latest(key, now)
        elif kind in {"delete", "undelete", "destroy"} and method in {"POST", "PUT"} and key:
            answer = self.kv.change_versions(kind, key, body, now)
        elif kind == "metadata" and method == "LIST":
            answer = self.kv.list(key)
        elif kind == "metadata" and method == "GET" and key:
            answer = self.kv.metadata(key)
        elif kind == "metadata" and method in {"POST", "PUT"} and key:
            answer = self.kv.update_metadata(key, body, now)
        elif kind == "metadata" and method == "DELETE" and key:
            answer = self.kv.delete_metadata(key)
        else:
            return self._unexpected(method, f"{self.mount}/{kind}/{key}")
        if isinstance(answer, Error):
            return answer
        status, data = answer
        return status, (_wrap(data=data, mount_type="kv") if status == 200 else None)

    def _approle_login(self, body: dict[str, Any], now: dt.datetime) -> tuple[int, Any] | Error:
        role = self._roles.get(str(body.get("role_id", "")))
        if role is None or body.get("secret_id") != role.secret_id:
            return Error(400, ("invalid role or secret ID",))
        token = FakeToken(
            id="hvs." + secrets.token_urlsafe(24),
            policies=["default", role.role_name],
            ttl=role.token_ttl,
            renewable=True,
            issued=now,
            path="auth/approle/login",
            paths=role.paths,
            expires_at=now + role.token_ttl,
        )
        self._tokens[token.id] = token
        return 200, _wrap(auth=_auth(token, metadata={"role_name": role.role_name}))

    def _renew(self, token: FakeToken, body: dict[str, Any], now: dt.datetime) -> tuple[int, Any] | Error:
        if not token.renewable:
            return Error(400, ("lease is not renewable",))
        increment = _seconds(body.get("increment"))
        granted = min(token.ttl, dt.timedelta(seconds=increment)) if increment else token.ttl
        token.expires_at = now + granted
        token.renewals += 1
        return 200, _wrap(auth=_auth(token, lease=granted))

    def _unexpected(self, method: str, path: str) -> Error:
        self.unexpected.append(f"{method} /v1/{path}")
        return Error(404, (f'no handler for route "{path}". route entry not found.',))

    def _health(self) -> dict[str, Any]:
        return {
            "initialized": True,
            "sealed": self.sealed,
            "standby": False,
            "performance_standby": False,
            "server_time_utc": int(self.now().timestamp()),
            "version": "1.15.0+fake",
            "cluster_name": "remotegpu-fake-vault",
        }

    def _seal_status(self) -> dict[str, Any]:
        return {
            "type": "shamir",
            "initialized": True,
            "sealed": self.sealed,
            "t": 1,
            "n": 1,
            "progress": 0,
            "version": "1.15.0+fake",
        }


def _token_of(headers: dict[str, str]) -> str:
    token = headers.get("x-vault-token", "")
    if not token and headers.get("authorization", "").startswith("Bearer "):
        token = headers["authorization"].removeprefix("Bearer ")
    return token


def _seconds(value: Any) -> int:
    """A Vault duration (`3600`, `"3600"`, `"1h"`, `"30m"`, `"45s"`) in seconds; 0 when absent."""
    if value in (None, ""):
        return 0
    text = str(value)
    units = {"s": 1, "m": 60, "h": 3600}
    if text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def _wrap(*, data: Any = None, auth: Any = None, mount_type: str = "") -> dict[str, Any]:
    return {
        "request_id": str(uuid.uuid4()),
        "lease_id": "",
        "renewable": False,
        "lease_duration": 0,
        "data": data,
        "wrap_info": None,
        "warnings": None,
        "auth": auth,
        "mount_type": mount_type,
    }


def _auth(token: FakeToken, *, lease: dt.timedelta | None = None, metadata: Any = None) -> dict[str, Any]:
    return {
        "client_token": token.id,
        "accessor": token.accessor,
        "policies": token.policies,
        "token_policies": token.policies,
        "metadata": metadata,
        "lease_duration": int((lease if lease is not None else token.ttl).total_seconds()),
        "renewable": token.renewable,
        "entity_id": "",
        "token_type": "service",
        "orphan": True,
        "mfa_requirement": None,
        "num_uses": 0,
    }


def _lookup(token: FakeToken, now: dt.datetime) -> dict[str, Any]:
    left = int((token.expires_at - now).total_seconds()) if token.expires_at else 0
    return {
        "accessor": token.accessor,
        "creation_time": int(token.issued.timestamp()),
        "creation_ttl": int(token.ttl.total_seconds()),
        "display_name": "approle" if token.path == "auth/approle/login" else "token",
        "entity_id": "",
        "expire_time": rfc3339(token.expires_at) or None,
        "explicit_max_ttl": 0,
        "id": token.id,
        "issue_time": rfc3339(token.issued),
        "meta": None,
        "num_uses": 0,
        "orphan": True,
        "path": token.path,
        "policies": token.policies,
        "renewable": token.renewable,
        "ttl": max(left, 0),
        "type": "service",
    }


def _error(error: Error) -> tuple[int, Any]:
    if error.body is not None:
        return error.status, _wrap(data=error.body["data"])
    return error.status, {"errors": list(error.messages)}


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive (hvac reuses one connection), every method routed to `FakeVault.handle`."""

    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        vault: FakeVault = self.server.vault  # type: ignore[attr-defined]
        status, payload = vault.handle(self.command, self.path, headers, body)
        encoded = b"" if payload is None or self.command == "HEAD" else json.dumps(payload).encode()
        self.send_response(status)
        if encoded:
            self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(encoded)))
        self.end_headers()
        self.wfile.write(encoded)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_LIST = do_PATCH = _answer  # noqa: N815 (http.server's names)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: a request line could name a token in a query string."""
