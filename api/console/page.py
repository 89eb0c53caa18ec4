"""What every console page shares: who is signed in, the CSRF token for its forms, the workspaces."""

from __future__ import annotations

from typing import Any

from litestar.response import Template

from remotegpu.api.console.calls import call
from remotegpu.api.console.session import CONSOLE_PATH, SESSION_COOKIE, csrf_token
from remotegpu.api.context import AnyRequest, Api
from remotegpu.api.routes import users, workspaces

HOME = f"{CONSOLE_PATH}/environments"


async def page(
    request: AnyRequest, api: Api, template: str, status_code: int = 200, **context: Any
) -> Template:
    """A whole page: who is signed in (from `GET /users/me`), the CSRF token for its forms, `context`."""
    me = await call(users.me, request=request, api=api)
    session = request.cookies.get(SESSION_COOKIE, "")
    context |= {"me": me, "csrf": csrf_token(api.jwt_secret, session), "path": request.url.path}
    return Template(template_name=template, context=context, status_code=status_code)


async def workspaces_of(request: AnyRequest, api: Api) -> list[Any]:
    """The caller's workspaces (`GET /workspaces`), for the pages' workspace pickers."""
    return list((await call(workspaces.list_mine, request=request, api=api, limit=200, cursor=None)).items)
