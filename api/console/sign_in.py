"""Signing in and out: `POST /auth/login`'s access token becomes the session cookie (see `session`)."""

from __future__ import annotations

from typing import Any

from litestar import Response, get, post
from litestar.di import NamedDependency
from litestar.exceptions import TooManyRequestsException
from litestar.params import FromQuery
from litestar.response import Redirect, Template

from remotegpu.api.console.calls import call
from remotegpu.api.console.page import HOME
from remotegpu.api.console.session import CONSOLE_PATH, PUBLIC, SESSION_COOKIE
from remotegpu.api.context import AnyRequest, Api
from remotegpu.api.routes import auth
from remotegpu.core.accounts.sign_in_limits import SignInLimits
from remotegpu.core.platform.errors import AuthenticationError


def _safe_next(target: str | None) -> str:
    """Only a console path: a sign-in never sends the browser elsewhere."""
    if target and target.startswith(f"{CONSOLE_PATH}/") and not target.startswith("//"):
        return target
    return HOME


@get("/", opt={PUBLIC: True})
async def index() -> Redirect:
    """The console starts at the environments."""
    return Redirect(HOME)


@get("/login", opt={PUBLIC: True})
async def login_form(next_page: FromQuery[str | None] = None) -> Template:
    """The sign-in form."""
    return Template(template_name="login.html", context={"error": None, "email": "", "next": next_page or ""})


@post("/login", opt={PUBLIC: True})
async def login(
    request: AnyRequest, api: Api, sign_in_limits: NamedDependency[SignInLimits]
) -> Response[Any]:
    """Sign in through `POST /auth/login`; its access token becomes the session cookie."""
    form = await request.form()
    email, password = str(form.get("email", "")), str(form.get("password", ""))
    target = str(form.get("next", ""))
    try:
        tokens = await call(
            auth.login,
            data=auth.LoginIn(email=email, password=password),
            request=request,
            api=api,
            sign_in_limits=sign_in_limits,
        )
    except (AuthenticationError, TooManyRequestsException) as error:
        status = 429 if isinstance(error, TooManyRequestsException) else 401
        detail = getattr(error, "detail", None) or str(error)
        context = {"error": detail, "email": email, "next": target}
        return Template(template_name="login.html", context=context, status_code=status)
    response: Response[Any] = Redirect(_safe_next(target))
    response.set_cookie(
        SESSION_COOKIE,
        tokens.access_token,
        path=CONSOLE_PATH,
        max_age=int(api.access_token_lifetime.total_seconds()),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@post("/logout")
async def logout() -> Redirect:
    """Sign out: the browser forgets the session."""
    response = Redirect(f"{CONSOLE_PATH}/login")
    response.delete_cookie(SESSION_COOKIE, path=CONSOLE_PATH)
    return response


ROUTES = [index, login_form, login, logout]
