"""The environment pages: the live list, create (form or YAML, dry run first), one environment with its
access, log tail and controls."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

import anyio.to_thread
import yaml
from litestar import Response, get, post
from litestar.exceptions import HTTPException
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, ServerSentEvent, Template

from remotegpu.api.console.calls import call, live, live_url
from remotegpu.api.console.forms import (
    ACCESS_CHOICES,
    FORM_FIELDS,
    Parsed,
    field_key,
    spec_diff,
    spec_from_form,
    spec_from_yaml,
    spec_yaml,
)
from remotegpu.api.console.page import HOME, page, workspaces_of
from remotegpu.api.console.rendering import render
from remotegpu.api.console.session import CONSOLE_PATH
from remotegpu.api.context import AnyRequest, Api
from remotegpu.api.routes import environments, images
from remotegpu.core.platform.errors import (
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
)

LIST_ROWS = 50
"""Environments on the list page. Each row is also read through `GET /environments/{id}` for its cost so
far (the list answer does not carry it, and only that route knows who may see it): 51 reads per push."""
ACTIONS = {
    "start": environments.start,
    "stop": environments.stop,
    "restart": environments.restart_one,
    "delete": environments.remove,
}


async def _environment_rows(request: AnyRequest, api: Api, workspace: str | None) -> list[Any]:
    """Each visible environment with its cost so far (from `GET /environments/{id}`, which shows the
    cost only to those who may see it)."""
    listed = await call(
        environments.list_all,
        request=request,
        api=api,
        workspace=workspace,
        phase=None,
        name=None,
        mine=False,
        limit=LIST_ROWS,
        cursor=None,
    )
    shown = []
    for item in listed.items:
        try:
            shown.append(await call(environments.show, environment_id=item.id, request=request, api=api))
        except NotFoundError:  # deleted since the list was read
            continue
    return shown


@get("/environments")
async def environments_page(
    request: AnyRequest, api: Api, workspace: FromQuery[str | None] = None
) -> Template:
    """The environments the caller can see, their phases kept live over server-sent events."""
    parts = {
        "environment-rows": render(
            "_environment_rows.html", rows=await _environment_rows(request, api, workspace)
        )
    }
    spaces = await workspaces_of(request, api)
    stream = live_url(f"{CONSOLE_PATH}/environments/live", parts, workspace=workspace)
    return await page(
        request,
        api,
        "environments.html",
        parts=parts,
        workspaces=spaces,
        workspace=workspace,
        live_url=stream,
    )


@get("/environments/live")
async def environments_live(
    request: AnyRequest, api: Api, workspace: FromQuery[str | None] = None, seen: FromQuery[str | None] = None
) -> ServerSentEvent:
    """The environments table, pushed whenever it changes."""

    async def fragments() -> dict[str, str]:
        rows = await _environment_rows(request, api, workspace)
        return {"environment-rows": render("_environment_rows.html", rows=rows)}

    return await live(fragments, seen=seen)


async def _new_page(
    request: AnyRequest,
    api: Api,
    *,
    workspace: str | None,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    mode: str = "form",
) -> Template:
    spaces = await workspaces_of(request, api)
    catalog = (await call(images.list_all, request=request, api=api, limit=200, cursor=None)).items
    values = values or {
        "resources.gpus.count": "1",
        "resources.cpu": "4",
        "resources.memory": "16Gi",
        "access": ["ssh"],
    }
    return await page(
        request,
        api,
        "new.html",
        status_code=422 if errors else 200,
        workspaces=spaces,
        workspace=workspace or (spaces[0].name if spaces else ""),
        images=catalog,
        values=values,
        errors=errors or {},
        mode=mode,
        access_choices=ACCESS_CHOICES,
    )


@get("/environments/new")
async def new_environment(request: AnyRequest, api: Api, workspace: FromQuery[str | None] = None) -> Template:
    """The create form, and a box to paste YAML into."""
    return await _new_page(request, api, workspace=workspace)


async def _read_spec(request: AnyRequest) -> tuple[Parsed, dict[str, Any], str, str]:
    form = await request.form()
    mode = "yaml" if form.get("mode") == "yaml" else "form"
    workspace = str(form.get("workspace", ""))
    values: dict[str, Any] = {key: value for key, value in form.items() if isinstance(value, str)}
    access = [str(value) for value in form.getall("access")] if "access" in form else []
    values["access"] = access
    if mode == "yaml":
        return spec_from_yaml(str(form.get("yaml", "")), workspace or None), values, workspace, mode
    return spec_from_form(form, access, workspace), values, workspace, mode


def _input_error(error: InvalidInputError, mode: str) -> dict[str, str]:
    key = field_key(error.field)
    if mode == "yaml":
        return {"yaml": f"{error.field}: {error.detail}"}
    return {key if key in FORM_FIELDS or key == "workspace" else "form": error.detail}


@post("/environments/preview")
async def preview(request: AnyRequest, api: Api) -> Template:
    """The dry run of the form's or the YAML's spec: what apply would change, before it does."""
    parsed, values, workspace, mode = await _read_spec(request)
    if parsed.spec is None:
        return await _new_page(
            request, api, workspace=workspace, values=values, errors=parsed.errors, mode=mode
        )
    try:
        result = await call(
            environments.apply, data=parsed.spec, request=request, api=api, workspace=None, dry_run=True
        )
    except (InvalidInputError, NotFoundError, ConflictError, ForbiddenError) as error:
        errors = _input_error(error, mode) if isinstance(error, InvalidInputError) else {"form": str(error)}
        return await _new_page(request, api, workspace=workspace, values=values, errors=errors, mode=mode)
    return await page(
        request,
        api,
        "preview.html",
        outcome=result.outcome,
        diff=spec_diff(result.stored_spec, result.desired_spec),
        spec_yaml=spec_yaml(parsed.spec),
        name=parsed.spec.name,
        workspace=parsed.spec.workspace,
    )


@post("/environments/apply")
async def apply(request: AnyRequest, api: Api) -> Response[Any]:
    """Apply the spec the preview showed (`POST /environments/apply`), then show the environment."""
    form = await request.form()
    parsed = spec_from_yaml(str(form.get("yaml", "")), None)
    if parsed.spec is None:
        return await _new_page(
            request,
            api,
            workspace=None,
            values={"yaml": form.get("yaml", "")},
            errors=parsed.errors,
            mode="yaml",
        )
    try:
        result = await call(
            environments.apply, data=parsed.spec, request=request, api=api, workspace=None, dry_run=False
        )
    except InvalidInputError as error:
        values = {"yaml": form.get("yaml", "")}
        return await _new_page(
            request, api, workspace=None, values=values, errors=_input_error(error, "yaml"), mode="yaml"
        )
    return Redirect(f"{CONSOLE_PATH}/environments/{result.environment.id}")


async def _environment_parts(request: AnyRequest, api: Api, environment_id: uuid.UUID) -> dict[str, str]:
    shown = await call(environments.show, environment_id=environment_id, request=request, api=api)
    access = await call(environments.access, environment_id=environment_id, request=request, api=api)
    events = await call(
        environments.events, environment_id=environment_id, request=request, api=api, limit=100, cursor=None
    )
    return {
        "env-status": render("_env_status.html", env=shown),
        "env-access": render("_env_access.html", access=access, env=shown),
        "env-events": render("_env_events.html", events=events.items),
    }


@get("/environments/{environment_id:uuid}")
async def environment_page(environment_id: FromPath[uuid.UUID], request: AnyRequest, api: Api) -> Template:
    """One environment: spec, status and conditions, access, events and the log tail, all live."""
    shown = await call(environments.show, environment_id=environment_id, request=request, api=api)
    parts = await _environment_parts(request, api, environment_id)
    stream = live_url(f"{CONSOLE_PATH}/environments/{environment_id}/live", parts)
    return await page(
        request, api, "environment.html", env=shown, parts=parts, spec_yaml=_yaml(shown.spec), live_url=stream
    )


def _yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False)


@get("/environments/{environment_id:uuid}/live")
async def environment_live(
    environment_id: FromPath[uuid.UUID], request: AnyRequest, api: Api, seen: FromQuery[str | None] = None
) -> ServerSentEvent:
    """The environment's status, access and events, pushed whenever they change."""
    return await live(lambda: _environment_parts(request, api, environment_id), seen=seen)


@get("/environments/{environment_id:uuid}/logs")
async def environment_logs(
    environment_id: FromPath[uuid.UUID], request: AnyRequest, api: Api
) -> ServerSentEvent:
    """The last 200 lines of the container's log (`GET /environments/{id}/logs?tail=200`), pushed as they
    change; why there is none while there is none."""

    async def fragments() -> dict[str, str]:
        try:
            stream = await call(
                environments.logs,
                environment_id=environment_id,
                request=request,
                api=api,
                follow=False,
                tail=200,
            )
            text = await anyio.to_thread.run_sync(lambda: "".join(stream.iterator))
            note = None if text else "the log is empty so far"
        except (ConflictError, HTTPException) as error:
            text, note = "", getattr(error, "detail", None) or str(error)
        return {"log-tail": render("_log.html", text=text, note=note)}

    return await live(fragments, every_s=2.0)


@post("/environments/{environment_id:uuid}/{action:str}")
async def control(
    environment_id: FromPath[uuid.UUID], action: FromPath[str], request: AnyRequest, api: Api
) -> Redirect:
    """Start, stop, restart or delete (the page asks for confirmation first)."""
    route = ACTIONS.get(action)
    if route is None:
        raise NotFoundError(f"no action {action!r}: use one of {', '.join(ACTIONS)}")
    shown = await call(route, environment_id=environment_id, request=request, api=api)
    if action == "delete":
        return Redirect(f"{HOME}?workspace={quote(shown.workspace)}")
    return Redirect(f"{CONSOLE_PATH}/environments/{environment_id}")


ROUTES = [
    environments_page,
    environments_live,
    new_environment,
    preview,
    apply,
    environment_page,
    environment_live,
    environment_logs,
    control,
]
