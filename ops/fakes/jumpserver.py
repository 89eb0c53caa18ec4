"""A contract fake of Jumpserver v3's REST API over real HTTP: bearer-token login, organisations, hosts,
accounts, users, asset permissions, platforms, limit/offset pagination, and Jumpserver's error answers.

Followed from jumpserver/jumpserver at tag v3.10.23 (the resources themselves: `jumpserver_assets`,
`jumpserver_access`):
- login: `apps/authentication/urls/api_urls.py` (`auth/` and `tokens/`), `api/token.py` (`TokenCreateApi`:
  201 `{token, keyword: "Bearer", date_expired, user}`; a refused login is 400 `{"error", "msg"}`),
  `errors/failed.py` + `errors/const.py` (`password_failed`, tries left, `block_login` after 7 failures),
  `apps/users/models/user.py: create_bearer_token` (36 random characters, reused for the same user until
  it expires after `TOKEN_EXPIRATION`, 24 h in `apps/jumpserver/conf.py`);
- every other call: `apps/authentication/backends/drf.py: AccessTokenAuthentication` (`Authorization:
  Bearer <token>`; 401 `{"detail": "Invalid token or cache refreshed.", "code": "authentication_failed"}`
  with `WWW-Authenticate: Bearer`; no header: 401 `not_authenticated`), RBAC refusing a non-admin with 403
  `permission_denied`, `apps/common/drf/exc_handlers.py` (`{"detail", "code"}` bodies, 404
  `"<Model> object does not exist."`), `apps/jumpserver/settings/libs.py` + `rewriting/pagination.py`
  (`LimitOffsetPagination` with no default page size: without `?limit=` a list is a bare JSON array; with
  it `{count, next, previous, results}`, absolute `next`/`previous` links, at most 10000 a page),
  `apps/orgs/utils.py` (`?oid=` or the `X-JMS-ORG` header picks the organisation; unknown: the default);
- routes: `apps/assets/urls/api_urls.py`, `apps/accounts/urls.py`, `apps/users/urls/api_urls.py`,
  `apps/perms/urls/asset_permission.py`; the web terminal link Jumpserver's UI opens,
  `/luna/?login_to=<asset id>&oid=<org id>`, from jumpserver/lina v3.10.21 `src/views/myassets/index.vue`.

A route it does not know is answered with Django's 404 page, and a method it does not implement on a known
route with DRF's 405; both are recorded in `unexpected`, which tests check is empty. `GET /` (an HTML list
of the hosts, their accounts and who may open them) and `GET /luna/` are dev conveniences for watching
connections come and go under `remotegpu dev`, not part of Jumpserver's API.

Faults for tests: `fail_next(n, status=503)` answers the next n requests with that status (None: drops
the connection unanswered); `expire_tokens()` forgets every token, as a Redis flush or expiry does.
"""

from __future__ import annotations

import datetime as dt
import hmac
import html
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from remotegpu.core.platform import clock
from remotegpu.ops.fakes.jumpserver_access import Access, FakePermission, FakeUser, user_json
from remotegpu.ops.fakes.jumpserver_accounts import Accounts, FakeAccount
from remotegpu.ops.fakes.jumpserver_assets import DEFAULT_ORG, Assets, FakeHost, platform_json
from remotegpu.ops.fakes.jumpserver_fields import ApiError, jms_time, new_token
from remotegpu.ops.fakes.jumpserver_http import Handler, Reply, json_object, page, payload
from remotegpu.ops.fakes.served import ServedFake

TOKEN_TTL = dt.timedelta(hours=24)
LOGIN_LIMIT = 7
_ROUTE = re.compile(
    r"/api/v1/(assets/hosts|assets/platforms|accounts/accounts|users/users|perms/asset-permissions)/(?:([^/.]+)/)?"
)
_NOT_FOUND_PAGE = b"<!doctype html><html><head><title>Not Found</title></head><body><h1>Not Found</h1><p>The requested resource was not found on this server.</p></body></html>"


@dataclass(frozen=True)
class _Kind:
    """One resource's operations; None where the fake does not implement the method."""

    listing: Callable[[str, dict[str, str]], list[dict[str, Any]]]
    lookup: Callable[[str, str], Any]
    render: Callable[[Any], dict[str, Any]]
    create: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None
    update: Callable[[Any, dict[str, Any]], dict[str, Any]] | None = None
    delete: Callable[[Any], None] | None = None


class FakeJumpserver(ServedFake):
    """A Jumpserver on 127.0.0.1 with one admin (`admin_username`/`admin_password`); a context manager."""

    def __init__(
        self,
        *,
        admin_username: str = "admin",
        admin_password: str | None = None,
        port: int = 0,
        now: Callable[[], dt.datetime] = clock.now,
    ) -> None:
        self.now = now
        self.assets = Assets(now)
        self.credentials = Accounts(self.assets)
        self.access = Access(self.assets)
        self.admin_password = admin_password or secrets.token_urlsafe(18)
        self.admin = self.access.add_user(
            admin_username,
            email="admin@example.com",
            name="Administrator",
            password=self.admin_password,
            superuser=True,
        )
        self.unexpected: list[str] = []
        self.requests: list[str] = []
        """`METHOD /path?query` of every request, for tests that count calls (no secret travels in one)."""
        self.logins = 0
        self.failed_logins = 0
        self._failures: dict[str, int] = {}
        self._faults: list[int | None] = []
        self._tokens: dict[str, tuple[str, dt.datetime]] = {}
        self._lock = threading.Lock()
        a, c, acc = self.assets, self.credentials, self.access
        self._kinds = {
            "assets/platforms": _Kind(
                lambda _, q: a.list_platforms(q), lambda _, key: a.platform(key), platform_json
            ),
            "assets/hosts": _Kind(
                a.list_hosts, a.host, a.host_json, a.create_host, a.update_host, self._delete_host
            ),
            "accounts/accounts": _Kind(
                c.list_accounts,
                c.account,
                c.account_json,
                c.create_account,
                c.update_account,
                self._delete_account,
            ),
            "users/users": _Kind(acc.list_users, acc.user, user_json, acc.create_user),
            "perms/asset-permissions": _Kind(
                acc.list_permissions,
                acc.permission,
                lambda p: acc.permission_json(p, detail=True),
                acc.create_permission,
                acc.update_permission,
                self._delete_permission,
            ),
        }
        self._serve(Handler, port, handle=self.handle)

    # What tests and `remotegpu dev` use

    def add_user(
        self,
        username: str,
        *,
        email: str | None = None,
        name: str | None = None,
        password: str | None = None,
        orgs: tuple[str, ...] = (DEFAULT_ORG,),
        superuser: bool = False,
    ) -> FakeUser:
        """A user as if made in Jumpserver's UI (or synchronised from LDAP), a member of `orgs`."""
        with self._lock:
            return self.access.add_user(
                username, email=email or f"{username}@example.com", name=name or username,
                password=password, orgs=orgs, superuser=superuser,
            )  # fmt: skip

    def add_org(self, name: str) -> str:
        with self._lock:
            return self.assets.add_org(name)

    def hosts(self, org_id: str = DEFAULT_ORG) -> list[FakeHost]:
        with self._lock:
            return [h for h in self.assets.hosts.values() if h.org_id == org_id]

    def accounts(self, org_id: str = DEFAULT_ORG) -> list[FakeAccount]:
        with self._lock:
            return [a for a in self.credentials.accounts.values() if a.org_id == org_id]

    def permissions(self, org_id: str = DEFAULT_ORG) -> list[FakePermission]:
        with self._lock:
            return [p for p in self.access.permissions.values() if p.org_id == org_id]

    def users(self) -> list[FakeUser]:
        with self._lock:
            return list(self.access.users.values())

    def username_of(self, user_id: str) -> str:
        with self._lock:
            return self.access.users[user_id].username

    def expire_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    def fail_next(self, count: int, status: int | None = 503) -> None:
        """Answer the next `count` requests (any route, login too) with `status`; None: drop them."""
        with self._lock:
            self._faults.extend([status] * count)

    # Serving

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply | None:
        """One request; None: close the connection without an answer."""
        with self._lock:
            self.requests.append(f"{method} {target}")
            if self._faults:
                status = self._faults.pop(0)
                return None if status is None else Reply.page(status, "<h1>Service Unavailable</h1>")
            split = urlsplit(target)
            query = {key: values[-1] for key, values in parse_qs(split.query).items()}
            try:
                return self._route(method, split.path, query, headers, body)
            except ApiError as error:
                return Reply.json(error.status, error.body)

    def _route(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> Reply:
        if method == "GET" and path == "/":
            return Reply.page(200, self._overview())
        if method == "GET" and path == "/luna/":
            return Reply.page(200, self._luna(query.get("login_to", "")))
        if path in ("/api/v1/authentication/auth/", "/api/v1/authentication/tokens/"):
            if method != "POST":
                return self._not_allowed(method, path)
            return self._login(payload(body))
        route = _ROUTE.fullmatch(path)
        if route is None:
            self.unexpected.append(f"{method} {path}")
            return Reply.page(404, _NOT_FOUND_PAGE)
        self._authenticate(headers)
        org = self.assets.org_of(query.get("oid") or headers.get("x-jms-org"))
        kind, item = self._kinds[route.group(1)], route.group(2)
        if item is None:
            if method == "GET":
                return Reply.json(200, page(kind.listing(org, query), query, headers.get("host", ""), path))
            if method == "POST" and kind.create is not None:
                return Reply.json(201, kind.create(org, json_object(payload(body))))
            return self._not_allowed(method, path)
        if method == "GET":
            return Reply.json(200, kind.render(kind.lookup(org, item)))
        if method == "PATCH" and kind.update is not None:
            return Reply.json(200, kind.update(kind.lookup(org, item), json_object(payload(body))))
        if method == "DELETE" and kind.delete is not None:
            kind.delete(kind.lookup(org, item))
            return Reply.json(204, None)
        return self._not_allowed(method, path)

    def _not_allowed(self, method: str, path: str) -> Reply:
        self.unexpected.append(f"{method} {path}")
        return Reply.json(405, {"detail": f'Method "{method}" not allowed.', "code": "method_not_allowed"})

    def _login(self, data: Any) -> Reply:
        data = data if isinstance(data, dict) else {}
        username, password = str(data.get("username") or ""), str(data.get("password") or "")
        failures = self._failures.get(username, 0)
        if failures >= LOGIN_LIMIT:
            self.failed_logins += 1
            return Reply.json(400, {"error": "block_login", "msg": _LOCKED})
        user = self.access.user_named(username)
        if user is None or user.password is None or not hmac.compare_digest(user.password, password):
            self.failed_logins += 1
            self._failures[username] = failures + 1
            left = LOGIN_LIMIT - failures - 1
            message = _LOCKED if left < 1 else _WRONG.format(left)
            return Reply.json(400, {"error": "password_failed", "msg": message})
        if not user.is_active:
            return Reply.json(400, {"error": "user_inactive", "msg": "This account is inactive."})
        self._failures.pop(username, None)
        self.logins += 1
        now = self.now()
        token = next((t for t, (uid, until) in self._tokens.items() if uid == user.id and now < until), None)
        if token is None:
            token = new_token()
            self._tokens[token] = (user.id, now + TOKEN_TTL)
        expires = self._tokens[token][1]
        profile = {k: v for k, v in user_json(user).items() if k in ("id", "name", "username", "email")}
        return Reply.json(
            201, {"token": token, "keyword": "Bearer", "date_expired": jms_time(expires), "user": profile}
        )

    def _authenticate(self, headers: dict[str, str]) -> None:
        parts = headers.get("authorization", "").split()
        if not parts or parts[0].lower() != "bearer":
            raise _unauthenticated("Authentication credentials were not provided.", "not_authenticated")
        if len(parts) == 1:
            raise _unauthenticated("Invalid token header. No credentials provided.")
        if len(parts) > 2:
            raise _unauthenticated("Invalid token header. Sign string should not contain spaces.")
        entry = self._tokens.get(parts[1])
        user = self.access.users.get(entry[0]) if entry and self.now() < entry[1] else None
        if user is None or not user.is_active:
            raise _unauthenticated("Invalid token or cache refreshed.")
        if not user.is_superuser:
            detail = "You do not have permission to perform this action."
            raise ApiError(403, {"detail": detail, "code": "permission_denied"})

    def _delete_host(self, host: FakeHost) -> None:
        self.assets.delete_host(host)
        self.credentials.forget_asset(host.id)
        self.access.forget_asset(host.id)

    def _delete_account(self, account: FakeAccount) -> None:
        del self.credentials.accounts[account.id]

    def _delete_permission(self, permission: FakePermission) -> None:
        del self.access.permissions[permission.id]

    def _overview(self) -> str:
        rows = []
        for host in self.assets.hosts.values():
            accounts = ", ".join(
                a.username for a in self.credentials.accounts.values() if a.asset_id == host.id
            )
            granted = {
                u for p in self.access.permissions.values() if host.id in p.asset_ids for u in p.user_ids
            }
            users = ", ".join(sorted(self.access.users[u].username for u in granted))
            link = f"/luna/?{urlencode({'login_to': host.id, 'oid': host.org_id})}"
            cells = (host.name, f"{host.address}:{host.port()}", accounts, users)
            rows.append(
                "<tr>"
                + "".join(f"<td>{html.escape(c)}</td>" for c in cells)
                + f'<td><a href="{html.escape(link)}">open</a></td></tr>'
            )
        return (
            "<!doctype html><html><head><title>Fake Jumpserver</title></head><body>"
            "<h1>Fake Jumpserver: assets</h1><p>A RemoteGPU dev convenience, not Jumpserver's UI.</p>"
            "<table border=1><tr><th>Asset</th><th>Address</th><th>Accounts</th><th>Users</th><th></th></tr>"
            + "".join(rows) + "</table></body></html>"
        )  # fmt: skip

    def _luna(self, asset_id: str) -> str:
        host = self.assets.hosts.get(asset_id)
        what = f"{host.name} ({host.address}:{host.port()})" if host else "an unknown asset"
        return f"<!doctype html><html><body><p>Luna would open a web terminal to {html.escape(what)} here.</p></body></html>"


_WRONG = (
    "The username or password you entered is incorrect, please enter it again. You can also try {} times "
    "(The account will be temporarily locked for 30 minutes)"
)
_LOCKED = "The account has been locked (please contact admin to unlock it or try again after 30 minutes)"


def _unauthenticated(detail: str, code: str = "authentication_failed") -> ApiError:
    return ApiError(401, {"detail": detail, "code": code})
