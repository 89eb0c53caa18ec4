"""A contract fake of Apache Guacamole 1.5's REST API over real HTTP: tokens, connections, users, user groups,
permissions.

It follows guacamole-client 1.5.5 (apache/guacamole-client), the web application's REST layer in
`guacamole/src/main/java/org/apache/guacamole/rest/`: `auth/TokenRESTService.java` (POST /api/tokens with
form-encoded `username` and `password`, answered with `APIAuthenticationResult` {authToken, username,
dataSource, availableDataSources}; DELETE /api/tokens/{token}), `auth/AuthenticationService.java` (the
token read from the `Guacamole-Token` header, else the `token` query parameter; a missing, unknown or
expired one is `GuacamoleUnauthorizedException("Permission Denied.")`: 403 PERMISSION_DENIED; refused
credentials are `GuacamoleInvalidCredentialsException`: 403 INVALID_CREDENTIALS with the username and
password fields `expected`), `auth/HashTokenSessionMap.java` (a session ends after `api-session-timeout`,
60 minutes without a request), `session/SessionRESTService.java`, `SessionResource.java` (DELETE
/api/session; an unknown data source is 404 "Session not associated with authentication provider …"),
`session/UserContextResource.java`, `directory/DirectoryResource.java` and `DirectoryObjectResource.java`
(GET lists a map by identifier, no pagination; POST answers the created object; PUT and DELETE answer
204; an unknown identifier is 404 `Not found: "…"`), `connection/ConnectionResource.java` (GET
…/parameters), `user/UserResource.java`, `permission/PermissionSetResource.java` (JSON Patch `add` and
`remove` on `/connectionPermissions/{id}` and `/systemPermissions`), `APIError.java`,
`RESTExceptionMapper.java` and guacamole-common's `GuacamoleStatus` (the status of each exception). The
directory's own rules (duplicate names, blank names, …) are the JDBC extension's: see `guacamole_directory`;
user groups (`/userGroups`, their `memberUsers`, `memberUserGroups`, `userGroups` and `permissions`, a
user's `userGroups` and `effectivePermissions`): see `guacamole_groups`. The JSON resources consume
`application/json` only (415 otherwise).

A request it does not implement is answered 404 and recorded in `unexpected`, which tests check is empty.
`GET /` (and the base path) serves a small HTML list of the connections and who may open each (READ held
directly or through a user group): a dev convenience, not part of the product's API, so a newcomer running
`remotegpu dev --gateway guacamole` can watch one appear.

Tests move time with the clock they pass (`now`), end every session with `expire_tokens()`, and make the
next requests fail with `fail_next(n, status=503)` (status None: the connection is dropped unanswered;
`handled=True`: the request takes effect first, as when a gateway's answer is lost after it acted).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from remotegpu.core.platform import clock
from remotegpu.ops.fakes import guacamole_groups
from remotegpu.ops.fakes.guacamole_directory import FakeConnection, FakeUser, GuacamoleDirectory
from remotegpu.ops.fakes.guacamole_errors import ApiError, invalid_credentials, not_found, unauthorized
from remotegpu.ops.fakes.guacamole_groups import FakeUserGroup
from remotegpu.ops.fakes.served import ServedFake

Answer = tuple[int, str, bytes]
"""Status, content type and body of one answer."""


@dataclass
class _Session:
    username: str
    last_access: dt.datetime


@dataclass
class _Faults:
    left: int = 0
    status: int | None = 503
    handled: bool = False
    matching: str = ""


class FakeGuacamole(ServedFake):
    """A Guacamole web application on 127.0.0.1 with one JDBC data source; use as a context manager."""

    def __init__(
        self,
        *,
        base_path: str = "",
        admin_username: str = "guacadmin",
        admin_password: str = "guacadmin",  # noqa: S107 (the product's documented default)
        data_source: str = "postgresql",
        port: int = 0,
        now: Callable[[], dt.datetime] = clock.now,
        session_timeout: dt.timedelta = dt.timedelta(minutes=60),
    ) -> None:
        self.base_path = base_path.rstrip("/")
        self.data_source = data_source
        self.now = now
        self.session_timeout = session_timeout
        self.directory = GuacamoleDirectory()
        self.unexpected: list[str] = []
        self.requests: list[str] = []
        """Each request as `METHOD /path?query`, oldest first."""
        self.logins = 0
        self.issued_tokens: list[str] = []
        """Every token a login answered, so tests can search logs and errors for them."""
        self._sessions: dict[str, _Session] = {}
        self._faults = _Faults()
        self._lock = threading.Lock()
        self.add_user(admin_username, admin_password, admin=True)
        self._base_path = self.base_path
        self._serve(_Handler, port, guacamole=self)

    # What tests arrange and read

    @property
    def connections(self) -> dict[str, FakeConnection]:
        return self.directory.connections

    @property
    def users(self) -> dict[str, FakeUser]:
        return self.directory.users

    def add_user(self, username: str, password: str | None = None, *, admin: bool = False) -> FakeUser:
        user = FakeUser(username, password, system_permissions={"ADMINISTER"} if admin else set())
        with self._lock:
            self.directory.users[username] = user
        return user

    def add_connection(self, name: str, protocol: str = "vnc", **parameters: str) -> FakeConnection:
        """A top-level connection made by someone else (an admin, in the web UI)."""
        body = {"name": name, "protocol": protocol, "parameters": parameters, "attributes": {}}
        with self._lock:
            admin = next(u for u in self.users.values() if u.is_admin)
            identifier = self.directory.create_connection(admin, body)["identifier"]
            return self.connections[identifier]

    def connection_named(self, name: str) -> FakeConnection | None:
        with self._lock:
            return next((c for c in self.connections.values() if c.name == name), None)

    def permissions_of(self, username: str) -> dict[str, set[str]]:
        """A user's connection permissions: connection identifier → types."""
        with self._lock:
            return {key: set(types) for key, types in self.users[username].connection_permissions.items()}

    def readers_of(self, identifier: str) -> set[str]:
        """The users who may open a connection: READ held themselves or through an effective user group."""
        with self._lock:
            return self._readers(identifier)

    @property
    def user_groups(self) -> dict[str, FakeUserGroup]:
        return self.directory.user_groups.groups

    def add_user_group(self, identifier: str, *members: str) -> FakeUserGroup:
        """A user group made by someone else (an admin, in the web UI), with these member users."""
        with self._lock:
            group = self.user_groups[identifier] = FakeUserGroup(identifier, member_users=set(members))
            return group

    @property
    def live_tokens(self) -> int:
        with self._lock:
            return len(self._sessions)

    def expire_tokens(self) -> None:
        """End every session, as the eviction task does after `api-session-timeout` of inactivity."""
        with self._lock:
            self._sessions.clear()

    def fail_next(
        self, count: int, status: int | None = 503, *, handled: bool = False, matching: str = ""
    ) -> None:
        """Answer the next `count` requests with `status` (None: drop the connection unanswered); with
        `matching`, only requests whose `METHOD /path` starts with it count."""
        with self._lock:
            self._faults = _Faults(count, status, handled, matching)

    # HTTP

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Answer | None:
        """One request: its answer, or None to drop the connection without one."""
        split = urlsplit(target)
        with self._lock:
            self.requests.append(f"{method} {target}")
            fault = self._take_fault(f"{method} {split.path}")
            if fault is not None and not fault.handled:
                return _fault_answer(fault.status)
            answer = self._answer(method, split.path, parse_qs(split.query), headers, body)
        return _fault_answer(fault.status) if fault is not None else answer

    def _take_fault(self, request: str) -> _Faults | None:
        if self._faults.left <= 0 or not request.startswith(self._faults.matching):
            return None
        self._faults.left -= 1
        return self._faults

    def _answer(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> Answer:
        if not path.startswith(self.base_path + "/") and path != self.base_path:
            return self._unexpected(method, path)
        route = path.removeprefix(self.base_path)
        try:
            if route in ("", "/") and method == "GET":
                return 200, "text/html; charset=utf-8", self._page().encode()
            if route == "/api/tokens" and method == "POST":
                return _json(200, self._log_in(headers, body))
            if route.startswith("/api/tokens/") and method == "DELETE":
                if self._sessions.pop(unquote(route.removeprefix("/api/tokens/")), None) is None:
                    raise not_found("No such token.")
                return 204, "", b""
            if route == "/api/session" or route.startswith("/api/session/"):
                return self._session_route(method, route, query, headers, body)
        except ApiError as error:
            return _json(error.status, error.body())
        return self._unexpected(method, path)

    def _log_in(self, headers: dict[str, str], body: bytes) -> dict[str, Any]:
        form: dict[str, list[str]] = {}
        if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            form = parse_qs(body.decode(), keep_blank_values=True)
        username, password = (form.get(key, [None])[-1] for key in ("username", "password"))
        if username is None and password is None and headers.get("authorization", "").startswith("Basic "):
            decoded = base64.b64decode(headers["authorization"].removeprefix("Basic ")).decode()
            username, _, password = decoded.partition(":")
        user = self.directory.users.get(username or "")
        if user is None or user.password is None or not secrets.compare_digest(user.password, password or ""):
            raise invalid_credentials()
        token = secrets.token_hex(32).upper()  # SecureRandomAuthTokenGenerator: 256 bits, hex
        self._sessions[token] = _Session(user.username, self.now())
        self.logins += 1
        self.issued_tokens.append(token)
        return {
            "authToken": token,
            "username": user.username,
            "dataSource": self.data_source,
            "availableDataSources": [self.data_source],
        }

    def _session_route(
        self, method: str, route: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> Answer:
        token = headers.get("guacamole-token") or query.get("token", [""])[-1]
        session = self._sessions.get(token)
        if session is not None and self.now() - session.last_access >= self.session_timeout:
            del self._sessions[token]
            session = None
        if session is None or session.username not in self.directory.users:
            raise unauthorized()
        session.last_access = self.now()
        viewer = self.directory.users[session.username]
        if route == "/api/session" and method == "DELETE":
            del self._sessions[token]
            return 204, "", b""
        parts = [unquote(part) for part in route.removeprefix("/api/session/").split("/")]
        if len(parts) < 3 or parts[0] != "data":
            return self._unexpected(method, route)
        if parts[1] != self.data_source:
            raise not_found(f'Session not associated with authentication provider "{parts[1]}".')
        payload: Any = None
        if method in ("POST", "PUT", "PATCH"):
            if not headers.get("content-type", "").startswith("application/json"):
                return 415, "text/plain", b"Unsupported Media Type"
            try:
                payload = json.loads(body) if body.strip() else None
            except ValueError:
                return 400, "text/plain", b"Unable to process JSON"
        return self._directory_route(viewer, method, parts[2:], payload, route)

    def _directory_route(
        self, viewer: FakeUser, method: str, rest: list[str], payload: Any, route: str
    ) -> Answer:
        d = self.directory
        routed = guacamole_groups.route(d, viewer, method, rest, payload)
        if routed is not None:
            return _routed(routed)
        match method, rest:
            case "GET", ["connections"]:
                return _json(200, d.list_connections(viewer))
            case "POST", ["connections"]:
                return _json(200, d.create_connection(viewer, payload))
            case "GET", ["connections", identifier]:
                return _json(200, d.connection(viewer, identifier).api())
            case "PUT", ["connections", identifier]:
                d.update_connection(viewer, identifier, payload)
                return 204, "", b""
            case "DELETE", ["connections", identifier]:
                d.delete_connection(viewer, identifier)
                return 204, "", b""
            case "GET", ["connections", identifier, "parameters"]:
                return _json(200, d.parameters(viewer, identifier))
            case "GET", ["users"]:
                return _json(200, d.list_users(viewer))
            case "POST", ["users"]:
                return _json(200, d.create_user(viewer, payload))
            case "GET", ["users", username]:
                return _json(200, d.user(viewer, username).api())
            case "GET", ["users", username, "permissions"]:
                return _json(200, d.user(viewer, username).permission_set())
            case "PATCH", ["users" | "userGroups" as kind, identifier, "permissions"]:
                self._patch_permissions(viewer, kind, identifier, payload, route)
                return 204, "", b""
        return self._unexpected(method, route)

    def _patch_permissions(
        self, viewer: FakeUser, kind: str, identifier: str, payload: Any, route: str
    ) -> None:
        d = self.directory
        holder: guacamole_groups.PermissionHolder = (
            d.user(viewer, identifier) if kind == "users" else d.user_groups.get(viewer.is_admin, identifier)
        )
        for path in self.directory.patch_permissions(viewer, holder, payload):
            self.unexpected.append(f"PATCH {route} {path}")

    def _unexpected(self, method: str, path: str) -> Answer:
        self.unexpected.append(f"{method} {path}")
        return 404, "text/plain", b"Not Found"

    def _page(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(c.name)}</td><td>{html.escape(c.identifier)}</td>"
            f"<td>{html.escape(c.protocol)}</td>"
            f"<td>{html.escape(c.parameters.get('hostname', ''))}:{html.escape(c.parameters.get('port', ''))}</td>"
            f"<td>{html.escape(', '.join(sorted(self._readers(c.identifier))))}</td></tr>"
            for c in self.connections.values()
        )
        return (
            "<!doctype html><html><head><meta charset='utf-8'><title>Fake Guacamole</title></head><body>"
            "<h1>Fake Guacamole: connections</h1><p>A development stand-in; no remote desktop here.</p>"
            "<table border='1'><tr><th>Name</th><th>Identifier</th><th>Protocol</th><th>Address</th>"
            f"<th>Who may open it</th></tr>{rows}</table></body></html>"
        )

    def _readers(self, identifier: str) -> set[str]:
        effective = self.directory.effective_connection_permissions
        return {u.username for u in self.users.values() if "READ" in effective(u).get(identifier, ())}


def _routed(routed: guacamole_groups.Routed) -> Answer:
    status, payload = routed
    return _json(status, payload) if payload is not None else (status, "", b"")


def _json(status: int, payload: Any) -> Answer:
    return status, "application/json", json.dumps(payload).encode()


def _fault_answer(status: int | None) -> Answer | None:
    if status is None:
        return None
    return (
        status,
        "text/html",
        f"<html><body><h1>{status}</h1>The gateway is unavailable.</body></html>".encode(),
    )


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive, every method routed to `FakeGuacamole.handle`."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms wait for an ACK

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        guacamole: FakeGuacamole = self.server.guacamole  # type: ignore[attr-defined]
        answer = guacamole.handle(self.command, self.path, headers, body)
        if answer is None:
            self.close_connection = True
            return
        status, content_type, encoded = answer
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Content-Length", str(len(encoded)))
        self.end_headers()
        self.wfile.write(encoded)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer  # noqa: N815 (http.server's names)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: a request line can carry a token (DELETE /api/tokens/…, ?token=…)."""
