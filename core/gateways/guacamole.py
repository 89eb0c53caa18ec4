"""The Apache Guacamole gateway: one SSH connection per running environment, through Guacamole's REST API.

It speaks the REST API of guacamole-client 1.5 (apache/guacamole-client, `guacamole/src/main/java/org/
apache/guacamole/rest/`: `auth/TokenRESTService.java`, `auth/AuthenticationService.java`,
`session/SessionResource.java`, `directory/DirectoryResource.java`, `connection/ConnectionResource.java`,
`user/UserResource.java`, `usergroup/UserGroupResource.java`, `identifier/RelatedObjectSetResource.java`,
`permission/PermissionSetResource.java`) against a database (JDBC) data source, the only kind whose
connections, users and user groups an API can create.

- Login is `POST /api/tokens` with the admin's username and password (form-encoded), done lazily and
  cached. The token travels in the `Guacamole-Token` header only, never in a URL (a URL reaches access
  logs and httpx's request log); sign-out is `DELETE /api/session`, for the same reason. A session the
  server forgot (expired after `api-session-timeout` of inactivity, restarted) answers 403: the gateway
  logs in again once and repeats the call.
- The data source is the one the login answer names (`dataSource`) unless the constructor is given one
  (a lab whose admin authenticates through LDAP or SSO names its database, e.g. "postgresql").
- A connection is found by its deterministic name among the top-level connections (parent ROOT); if there
  is none, it is created (protocol ssh; hostname, port, username, private-key), or, when the address,
  port, account or key differ, updated with PUT, keeping the connection's other parameters and attributes
  as an admin may have tuned them.
- Who may open the connection is a user group of the same name, granted READ on it: its member users are
  made exactly `target.users` on every ensure (the members read with GET, the difference sent as one JSON
  Patch of `add` / `remove` on `memberUsers`), so a user who lost the environment loses the connection at
  the next ensure. A group, not READ per user, because Guacamole cannot answer "who may read connection X"
  (only "what may user U read"), so per-user grants could never be taken back. Connections made by an
  earlier per-user client (never shipped) keep those grants until the connection is deleted.
- Guacamole adds to a group only users its database knows (an unknown name is silently skipped). Each
  entitled user missing there is created with no password: the JDBC extension then stores a random hash,
  so nobody can sign in as that user with a password; the user signs in through the lab's SSO or LDAP
  extension, and Guacamole applies the database user's groups and permissions to that login because the
  usernames match. Users are never deleted. Deleting the connection deletes its group (group first: a
  connection left behind is still listed, so the next delete finds both; a group left behind would not be).
- Every failure the next attempt may not see (unreachable, 5xx, refused login, an answer it did not
  expect) raises `GatewayUnavailableError` naming the call and Guacamole's own reason (status, `type`,
  `message` of its `APIError`), never a password, token or key.
"""

from __future__ import annotations

import base64
import logging
import threading
import uuid
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from remotegpu.core.environments.states import AccessKind
from remotegpu.core.gateways.gateway import (
    GatewayConnection,
    GatewayTarget,
    GatewayUnavailableError,
    GatewayUser,
    connection_name,
    environment_of,
)

log = logging.getLogger(__name__)

ROOT = "ROOT"
"""The identifier of Guacamole's root connection group."""

TOKEN_HEADER = "Guacamole-Token"  # noqa: S105 (a header name, not a secret)


class GuacamoleGateway:
    """`Gateway` on one Guacamole data source; thread-safe (one token, replaced under a lock)."""

    def __init__(
        self,
        url: str,
        username: str,
        password: str,
        *,
        data_source: str | None = None,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.username = username
        self._password = password
        self._data_source = data_source
        self._http = httpx.Client(timeout=timeout, transport=transport)
        self._lock = threading.Lock()
        self._token: str | None = None

    def __repr__(self) -> str:
        return f"GuacamoleGateway(url={self.url!r}, username={self.username!r})"

    @property
    def kind(self) -> AccessKind:
        return AccessKind.GUACAMOLE

    def ensure_connection(self, target: GatewayTarget) -> GatewayConnection:
        name = connection_name(target.environment_id)
        wanted = {
            "hostname": target.hostname,
            "port": str(target.port),
            "username": target.username,
            "private-key": target.private_key,
        }
        existing = self._find(name)
        if existing is None:
            identifier = self._create(name, wanted)
        else:
            identifier = str(existing["identifier"])
            self._update_if_changed(existing, wanted)
        self._ensure_group(name)
        self._grant_group(name, identifier)
        self._set_members(name, target.users)
        return GatewayConnection(
            kind=AccessKind.GUACAMOLE,
            environment_id=target.environment_id,
            connection_id=identifier,
            url=f"{self.url}/#/client/{client_identifier(identifier, self._source())}",
        )

    def delete_connection(self, environment_id: uuid.UUID) -> None:
        name = connection_name(environment_id)
        self._call("DELETE", f"userGroups/{_segment(name)}", f"delete user group {name}", ok=(404,))
        found = self._find(name)
        if found is not None:  # a 404 too: deleted meanwhile
            self._call(
                "DELETE",
                f"connections/{_segment(str(found['identifier']))}",
                f"delete connection {name}",
                ok=(404,),
            )

    def connected_environments(self) -> set[uuid.UUID]:
        return {
            environment
            for connection in self._top_level()
            if (environment := environment_of(str(connection.get("name", "")))) is not None
        }

    def close(self) -> None:
        with self._lock:
            token, self._token = self._token, None
        if token is not None:
            try:
                self._http.delete(f"{self.url}/api/session", headers={TOKEN_HEADER: token})
            except httpx.HTTPError:
                log.info("Guacamole sign-out failed; the session will expire", extra={"gateway": self.url})
        self._http.close()

    # Connections

    def _top_level(self) -> list[dict[str, Any]]:
        answer = self._call("GET", "connections", "list connections").json()
        if not isinstance(answer, dict):
            raise GatewayUnavailableError(
                "Guacamole list connections: the answer is not a map of connections"
            )
        return [c for c in answer.values() if isinstance(c, dict) and c.get("parentIdentifier", ROOT) == ROOT]

    def _find(self, name: str) -> dict[str, Any] | None:
        return next((c for c in self._top_level() if c.get("name") == name), None)

    def _create(self, name: str, parameters: dict[str, str]) -> str:
        body = {
            "name": name,
            "parentIdentifier": ROOT,
            "protocol": "ssh",
            "parameters": parameters,
            "attributes": {},
        }
        answer = self._call("POST", "connections", f"create connection {name}", json=body, ok=(400,))
        if answer.status_code == 400:  # made meanwhile by another worker: "The connection … already exists."
            found = self._find(name)
            if found is None:
                raise GatewayUnavailableError(f"Guacamole create connection {name}: {_reason(answer)}")
            return str(found["identifier"])
        identifier = answer.json().get("identifier")
        if not identifier:
            raise GatewayUnavailableError(f"Guacamole create connection {name}: the answer has no identifier")
        log.info("Guacamole connection created", extra={"gateway": self.url, "connection": name})
        return str(identifier)

    def _update_if_changed(self, existing: dict[str, Any], wanted: dict[str, str]) -> None:
        identifier = str(existing["identifier"])
        current = self._call(
            "GET", f"connections/{_segment(identifier)}/parameters", "read parameters"
        ).json()
        if existing.get("protocol") == "ssh" and all(
            current.get(key) == value for key, value in wanted.items()
        ):
            return
        body = {
            "name": existing["name"],
            "parentIdentifier": ROOT,
            "protocol": "ssh",
            "parameters": {**current, **wanted},
            "attributes": existing.get("attributes") or {},
        }
        self._call(
            "PUT", f"connections/{_segment(identifier)}", f"update connection {existing['name']}", json=body
        )
        log.info("Guacamole connection updated", extra={"gateway": self.url, "connection": existing["name"]})

    # Who may open it: a user group of the connection's name

    def _ensure_group(self, name: str) -> None:
        path = f"userGroups/{_segment(name)}"
        if self._call("GET", path, f"read user group {name}", ok=(404,)).status_code != 404:
            return
        body = {"identifier": name, "attributes": {}}
        created = self._call("POST", "userGroups", f"create user group {name}", json=body, ok=(400,))
        if created.status_code == 400:  # made meanwhile: "Group … already exists."; anything else is real
            if self._call("GET", path, f"read user group {name}", ok=(404,)).status_code == 404:
                raise GatewayUnavailableError(f"Guacamole create user group {name}: {_reason(created)}")
            return
        log.info("Guacamole user group created", extra={"gateway": self.url, "user_group": name})

    def _grant_group(self, name: str, identifier: str) -> None:
        path = f"userGroups/{_segment(name)}/permissions"
        held = self._call("GET", path, f"read permissions of user group {name}").json()
        connections = held.get("connectionPermissions") if isinstance(held, dict) else None
        if isinstance(connections, dict) and "READ" in (connections.get(identifier) or ()):
            return
        patch = [{"op": "add", "path": f"/connectionPermissions/{identifier}", "value": "READ"}]
        self._call("PATCH", path, f"grant user group {name} READ on connection {identifier}", json=patch)

    def _set_members(self, name: str, users: tuple[GatewayUser, ...]) -> None:
        path = f"userGroups/{_segment(name)}/memberUsers"
        current = self._call("GET", path, f"read members of user group {name}").json()
        if not isinstance(current, list):
            raise GatewayUnavailableError(f"Guacamole read members of user group {name}: not a list")
        wanted = {user.username: user for user in users}
        joining = [user for username, user in wanted.items() if username not in current]
        leaving = sorted(set(current) - wanted.keys())
        for user in joining:  # a member exists already; only a newcomer may need creating
            self._ensure_user(user.username, user.display_name, user.email)
        patch = [{"op": "add", "path": "/", "value": user.username} for user in joining] + [
            {"op": "remove", "path": "/", "value": username} for username in leaving
        ]
        if patch:
            self._call("PATCH", path, f"set members of user group {name}", json=patch)
            log.info(
                "Guacamole user group members set",
                extra={
                    "gateway": self.url,
                    "user_group": name,
                    "added": len(joining),
                    "removed": len(leaving),
                },
            )

    # Users

    def _ensure_user(self, username: str, display_name: str, email: str) -> None:
        path = f"users/{_segment(username)}"
        if self._call("GET", path, f"read user {username!r}", ok=(404,)).status_code != 404:
            return
        body = {
            "username": username,
            "attributes": {"guac-full-name": display_name, "guac-email-address": email},
        }
        created = self._call("POST", "users", f"create user {username!r}", json=body, ok=(400,))
        if created.status_code == 400:  # made meanwhile: "User … already exists."; anything else is real
            if self._call("GET", path, f"read user {username!r}", ok=(404,)).status_code == 404:
                raise GatewayUnavailableError(f"Guacamole create user {username!r}: {_reason(created)}")
            return
        log.info("Guacamole user created", extra={"gateway": self.url, "username": username})

    # HTTP

    def _call(
        self, method: str, path: str, what: str, *, json: Any = None, ok: tuple[int, ...] = ()
    ) -> httpx.Response:
        """One call under /api/session/data/<source>/; statuses in `ok` are returned, not raised. A 401 or 403
        (the session is gone) logs in again once and repeats the call."""
        for attempt in range(2):
            token = self._session_token()
            url = f"{self.url}/api/session/data/{_segment(self._source())}/{path}"
            try:
                answer = self._http.request(method, url, json=json, headers={TOKEN_HEADER: token})
            except httpx.HTTPError as exc:
                raise GatewayUnavailableError(f"Guacamole {what}: {_network_reason(exc)}") from exc
            if answer.status_code in (401, 403) and attempt == 0:
                self._forget(token)
                continue
            if answer.is_success or answer.status_code in ok:
                return answer
            raise GatewayUnavailableError(f"Guacamole {what}: {_reason(answer)}")
        raise AssertionError("unreachable")  # pragma: no cover

    def _session_token(self) -> str:
        with self._lock:
            if self._token is None:
                self._token = self._log_in()
            return self._token

    def _forget(self, token: str) -> None:
        with self._lock:
            if self._token == token:  # another thread may have logged in again already
                self._token = None

    def _source(self) -> str:
        if self._data_source is None:
            self._session_token()
        assert self._data_source is not None
        return self._data_source

    def _log_in(self) -> str:
        try:
            answer = self._http.post(
                f"{self.url}/api/tokens", data={"username": self.username, "password": self._password}
            )
        except httpx.HTTPError as exc:
            raise GatewayUnavailableError(f"Guacamole login: {_network_reason(exc)}") from exc
        if answer.status_code == 404:
            raise GatewayUnavailableError(
                f"Guacamole login: 404 at {_without_userinfo(self.url)}/api/tokens: is guacamole_url the web"
                " application's address (e.g. https://host/guacamole)?"
            )
        if answer.status_code in (401, 403):
            raise GatewayUnavailableError(
                f"Guacamole login as {self.username!r} refused ({_reason(answer)}): check the admin"
                " username and password"
            )
        if not answer.is_success:
            raise GatewayUnavailableError(f"Guacamole login: {_reason(answer)}")
        result = answer.json()
        token, available = result.get("authToken"), result.get("availableDataSources") or []
        if not token:
            raise GatewayUnavailableError("Guacamole login: the answer has no authToken")
        if self._data_source is None:
            self._data_source = str(result.get("dataSource") or "")
        if available and self._data_source not in available:
            raise GatewayUnavailableError(
                f"Guacamole login: data source {self._data_source!r} is not one of {sorted(available)}"
            )
        log.info("Logged in to Guacamole", extra={"gateway": self.url, "data_source": self._data_source})
        return str(token)


def client_identifier(identifier: str, data_source: str) -> str:
    """The web client's id of a connection (`ClientIdentifier.toString`): unpadded base64url of the
    identifier, the type "c" and the data source, joined by NUL."""
    raw = "\0".join((identifier, "c", data_source)).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _without_userinfo(url: str) -> str:
    """The URL without any `user:password@` a careless setting may carry."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _segment(value: str) -> str:
    return quote(value, safe="")


def _reason(answer: httpx.Response) -> str:
    """Status and Guacamole's `APIError` type and message; only the reason phrase for any other body."""
    reason = f"{answer.status_code} {answer.reason_phrase}".strip()
    try:
        error = answer.json()
    except ValueError:
        return reason
    if isinstance(error, dict) and error.get("type"):
        return f"{answer.status_code} {error['type']}: {str(error.get('message') or '')[:200]}"
    return reason


def _network_reason(exc: httpx.HTTPError) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
