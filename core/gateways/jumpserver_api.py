"""Jumpserver v3's REST API as the gateway speaks it: a bearer token got lazily from the admin's username
and password, the organisation header, limit/offset pagination, and Jumpserver's errors turned into
`GatewayUnavailableError`s that name the call and never carry a secret.

Jumpserver (jumpserver/jumpserver `apps/authentication/api/token.py`, `backends/drf.py`) hands out a bearer
token at `POST /api/v1/authentication/auth/`, valid for a day and forgotten when its cache is flushed; a
forgotten or expired token is a 401, after which we log in once more and retry. A refused login (400) is
not retried for `REFUSED_LOGIN_PAUSE`: Jumpserver locks an account for 30 minutes after 7 wrong passwords,
and a reconciler retrying every few seconds with a stale password would lock the admin out of the UI too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from remotegpu.core.gateways.gateway import GatewayUnavailableError

AUTH_PATH = "/api/v1/authentication/auth/"
PAGE_SIZE = 100
REFUSED_LOGIN_PAUSE = 600.0
"""Seconds a refused login is remembered before the password is tried again."""
_MAX_PAGES = 1000


class JumpserverRequestError(GatewayUnavailableError):
    """Jumpserver refused a call (a 4xx other than an expired token); `fields` names the fields it blamed."""

    def __init__(self, message: str, status: int, fields: frozenset[str]) -> None:
        super().__init__(message)
        self.status = status
        self.fields = fields


class JumpserverApi:
    """One admin's session with one Jumpserver organisation. Thread-safe (httpx's client is)."""

    def __init__(
        self,
        url: str,
        username: str,
        password: str,
        *,
        org_id: str,
        timeout: float,
        transport: httpx.BaseTransport | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = url.rstrip("/")
        self._username = username
        self._password = password
        self._monotonic = monotonic
        self._token: str | None = None
        self._refused: tuple[float, str] | None = None
        self._login_lock = threading.Lock()
        self._client = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            headers={"Accept": "application/json", "X-JMS-ORG": org_id},
        )

    def __repr__(self) -> str:  # never the password or the token
        return f"JumpserverApi(url={self.base_url!r}, username={self._username!r})"

    def close(self) -> None:
        """Bearer tokens have no logout in Jumpserver (they lapse in its cache); only the client is released."""
        self._client.close()

    def call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: dict[str, Any] | None = None,
        json: Any = None,
        missing_ok: bool = False,
    ) -> Any:
        """One call's JSON answer (None for 204, or a 404 when `missing_ok`); an expired token is renewed
        once. Raises GatewayUnavailableError (JumpserverRequestError for a refusal)."""
        token = self._token or self._login()
        response = self._send(method, path, what, token, params, json)
        if response.status_code == 401:
            self._forget(token)
            response = self._send(method, path, what, self._login(), params, json)
        status = response.status_code
        if status == 404 and missing_ok:
            return None
        if status >= 500:
            raise GatewayUnavailableError(f"Jumpserver {what}: HTTP {status}")
        if status == 401:
            raise GatewayUnavailableError(f"Jumpserver {what}: HTTP 401 with a fresh token")
        if status >= 400:
            raise _refusal(what, response)
        if status == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise GatewayUnavailableError(
                f"Jumpserver {what}: HTTP {status} with an answer that is not JSON"
            ) from None

    def list_all(self, path: str, *, what: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every item of a list, page by page. Offsets are counted here rather than following `next`, which
        Jumpserver builds from the Host header and which behind its proxy may name another scheme or host."""
        items: list[dict[str, Any]] = []
        for _ in range(_MAX_PAGES):
            page = self.call(
                "GET", path, what=what, params={**(params or {}), "limit": PAGE_SIZE, "offset": len(items)}
            )
            if isinstance(page, list):  # a Jumpserver that does not paginate this list
                return [item for item in page if isinstance(item, dict)]
            results = page.get("results") if isinstance(page, dict) else None
            if not isinstance(results, list):
                raise GatewayUnavailableError(
                    f"Jumpserver {what}: an answer that is neither a page nor a list"
                )
            items.extend(item for item in results if isinstance(item, dict))
            if not results or len(items) >= int(page.get("count") or 0):
                return items
        raise GatewayUnavailableError(f"Jumpserver {what}: more than {_MAX_PAGES} pages")

    def _send(
        self, method: str, path: str, what: str, token: str, params: dict[str, Any] | None, json: Any
    ) -> httpx.Response:
        try:
            return self._client.request(
                method, path, params=params, json=json, headers={"Authorization": f"Bearer {token}"}
            )
        except httpx.HTTPError as error:
            raise GatewayUnavailableError(f"Jumpserver {what}: {_reason(error)}") from error

    def _forget(self, token: str) -> None:
        with self._login_lock:
            if self._token == token:
                self._token = None

    def _login(self) -> str:
        with self._login_lock:
            if self._token is not None:  # another thread logged in meanwhile
                return self._token
            if self._refused is not None:
                until, earlier = self._refused
                if self._monotonic() < until:
                    raise GatewayUnavailableError(
                        f"{earlier}; not tried again for {int(until - self._monotonic())} s, so the admin"
                        " account is not locked"
                    )
            try:
                response = self._client.post(
                    AUTH_PATH, json={"username": self._username, "password": self._password}
                )
            except httpx.HTTPError as error:
                raise GatewayUnavailableError(f"Jumpserver login: {_reason(error)}") from error
            if response.status_code >= 500:
                raise GatewayUnavailableError(f"Jumpserver login: HTTP {response.status_code}")
            body = _json(response)
            token = body.get("token") if isinstance(body, dict) else None
            if response.status_code in (200, 201) and isinstance(token, str) and token:
                self._token, self._refused = token, None
                return token
            refusal = body.get("error") if isinstance(body, dict) else None
            # 400: a wrong password, a blocked account; 200 without a token: MFA or a login confirmation asked.
            if response.status_code in (200, 400):
                reason = _short(refusal) if refusal else f"HTTP {response.status_code}"
                hint = (
                    "check the admin username and password"
                    if response.status_code == 400
                    else "the admin account must log in without MFA or a login confirmation"
                )
                message = f"Jumpserver login as {self._username!r} refused ({reason}): {hint}"
                self._refused = (self._monotonic() + REFUSED_LOGIN_PAUSE, message)
                raise GatewayUnavailableError(message)
            raise GatewayUnavailableError(f"Jumpserver login: HTTP {response.status_code}")


def _refusal(what: str, response: httpx.Response) -> JumpserverRequestError:
    """DRF's error body summarised: `{"detail": …}`, field errors `{"name": ["…"]}`, or a bare list. Jumpserver
    does not echo a secret in these (its SSH key check says only "private key invalid")."""
    body = _json(response)
    fields: frozenset[str] = frozenset()
    if isinstance(body, dict) and "detail" in body:
        summary = _short(body["detail"])
    elif isinstance(body, dict):
        fields = frozenset(body)
        summary = "; ".join(f"{key}: {_short(value)}" for key, value in body.items())
    elif isinstance(body, list):
        summary = _short(body)
    else:
        summary = "no JSON answer"
    hint = " (the admin account lacks a Jumpserver permission)" if response.status_code == 403 else ""
    message = f"Jumpserver {what}: HTTP {response.status_code} {summary[:300]}{hint}"
    return JumpserverRequestError(message, response.status_code, fields)


def _short(value: Any) -> str:
    while isinstance(value, list) and value:
        value = value[0]
    return str(value)[:200]


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _reason(error: httpx.HTTPError) -> str:
    detail = str(error)
    return f"{type(error).__name__}: {detail[:200]}" if detail else type(error).__name__
