"""The `/ui` router: pages, live streams and static assets behind the session middleware and CSRF guard;
errors answered as pages (a sign-in form when the session is missing or over)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from litestar import Response, Router
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.response import Redirect
from litestar.static_files import create_static_files_router

from remotegpu.api.console import account_pages, environment_pages, sign_in
from remotegpu.api.console.ops_page import make_ops_routes
from remotegpu.api.console.rendering import STATIC, render
from remotegpu.api.console.session import CONSOLE_PATH, SESSION_COOKIE, csrf_guard, session_middleware
from remotegpu.api.context import AnyRequest
from remotegpu.api.problems import EXCEPTION_HANDLERS
from remotegpu.core.accounts.sign_in_limits import SignInLimits
from remotegpu.core.platform.errors import AuthenticationError, RemoteGPUError
from remotegpu.core.platform.settings import Settings

_TITLES = {403: "Not allowed", 404: "Not found", 409: "Conflict", 422: "Invalid input", 429: "Slow down"}


def _as_page(request: AnyRequest, error: Exception) -> Response[Any]:
    """A sign-in form for a missing or expired session; the REST answer's status and words otherwise."""
    if isinstance(error, AuthenticationError) or (
        isinstance(error, HTTPException) and error.status_code == 401
    ):
        if request.headers.get("accept", "").startswith("text/event-stream"):
            return Response("", status_code=204)  # EventSource stops on 204
        response: Response[Any] = Redirect(f"{CONSOLE_PATH}/login?next_page={quote(request.url.path)}")
        response.delete_cookie(SESSION_COOKIE, path=CONSOLE_PATH)
        return response
    problem = EXCEPTION_HANDLERS[_handled(error)](request, error)
    status = problem.status_code
    body = problem.content if isinstance(problem.content, dict) else {}
    html = render(
        "error.html",
        status=status,
        title=body.get("title") or _TITLES.get(status, "Error"),
        detail=body.get("detail") or str(error),
    )
    return Response(html, status_code=status, media_type="text/html")


def _handled(error: Exception) -> Any:
    for kind in type(error).__mro__:
        if kind in EXCEPTION_HANDLERS:
            return kind
    return Exception


def make_router(settings: Settings, jwt_secret: str, sign_in_limits: Callable[[], SignInLimits]) -> Router:
    """Everything under `/ui`. `jwt_secret` signs the CSRF tokens; `sign_in_limits` are the API's own,
    so the console's sign-in form counts against the same limits as `POST /auth/login`."""
    deadlines = {
        "scheduled": settings.provisioning_deadline_seconds,
        "provisioning": settings.provisioning_deadline_seconds,
        "stopping": settings.stopping_deadline_seconds,
    }
    static = create_static_files_router(
        path="/static", directories=[STATIC], include_in_schema=False, cache_control=None
    )
    return Router(
        CONSOLE_PATH,
        route_handlers=[
            *sign_in.ROUTES,
            *environment_pages.ROUTES,
            *account_pages.ROUTES,
            *make_ops_routes(deadlines),
            static,
        ],
        middleware=[session_middleware],
        guards=[csrf_guard(jwt_secret)],
        dependencies={"sign_in_limits": Provide(sign_in_limits, sync_to_thread=False, use_cache=False)},
        exception_handlers={RemoteGPUError: _as_page, HTTPException: _as_page},
        include_in_schema=False,
    )
