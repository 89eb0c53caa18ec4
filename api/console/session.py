"""The console's session: the API's own access token in a cookie, and a CSRF token for every write.

The cookie is HttpOnly (no script reads it, so nothing is kept in `localStorage`), SameSite=Strict (no
other site's page sends it) and scoped to `/ui`. `session_middleware` copies it into the request's
`Authorization` header, so the route handlers the console calls authenticate it exactly as they
authenticate the CLI. A write also needs the CSRF token (a form field or the `X-CSRF-Token` header):
an HMAC of the session under the token-signing key, so it needs no storage and dies with the session.
"""

from __future__ import annotations

import hashlib
import hmac
from http.cookies import CookieError, SimpleCookie
from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import ASGIApp, Empty, Receive, Scope, Send
from litestar.utils.scope.state import ScopeState

from remotegpu.core.platform.errors import ForbiddenError

CONSOLE_PATH = "/ui"
SESSION_COOKIE = "remotegpu_session"
CSRF_FIELD = "_csrf"
CSRF_HEADER = "x-csrf-token"
PUBLIC = "console_public"
"""`opt` key of the handlers that need no session (the sign-in form)."""
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_token(secret: str, session: str) -> str:
    """The CSRF token of `session`: the same for every form of one session, useless for any other."""
    return hmac.new(secret.encode(), b"console-csrf:" + session.encode(), hashlib.sha256).hexdigest()


def session_of(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The session cookie's value among raw ASGI headers, if any."""
    for name, value in headers:
        if name == b"cookie":
            cookies: SimpleCookie = SimpleCookie()
            try:
                cookies.load(value.decode("latin-1"))
            except CookieError:
                continue
            if SESSION_COOKIE in cookies:
                return cookies[SESSION_COOKIE].value or None
    return None


def session_middleware(app: ASGIApp) -> ASGIApp:
    """Send the session cookie's token as `Authorization: Bearer …` (a request that carries its own
    `Authorization` keeps it)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        headers = list(scope["headers"])
        session = session_of(headers)
        if session and not any(name == b"authorization" for name, _ in headers):
            headers.append((b"authorization", b"Bearer " + session.encode("latin-1")))
            scope["headers"] = headers
            ScopeState.from_scope(scope).headers = Empty  # an outer middleware may have parsed them
        await app(scope, receive, send)

    return middleware


def csrf_guard(secret: str) -> Any:
    """A guard refusing (403) a console write whose CSRF token is missing or not the session's."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        if connection.scope.get("method", "GET") in _SAFE_METHODS or handler.opt.get(PUBLIC):
            return
        session = session_of(list(connection.scope["headers"]))
        sent = connection.headers.get(CSRF_HEADER)
        if sent is None and isinstance(connection, Request):
            form = await connection.form()
            value = form.get(CSRF_FIELD)
            sent = value if isinstance(value, str) else None
        if not session or not sent or not hmac.compare_digest(sent, csrf_token(secret, session)):
            raise ForbiddenError(
                "the form's CSRF token is missing or not this session's: reload the page and try again"
            )

    return guard
