"""Every error as an RFC 9457 problem document (`application/problem+json`) naming the field at fault.

Expected errors (`RemoteGPUError`s and Litestar's own validation and HTTP errors) keep their status and
message; anything else is a 500 whose body says nothing about the internals (the log has the trace).

`read_request_input` runs before every handler: it decodes a JSON body once (Litestar reuses it), so a
body nested too deeply to decode is a 400 rather than a `RecursionError`, and it refuses the NUL
character in any string of the body or the query, naming the field, in one place for every route
(Postgres cannot store NUL in text; without this it came back in Postgres's words, or was stored in JSONB
and broke the pod later).
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

import msgspec
import psycopg
from litestar import Request, Response
from litestar.exceptions import ClientException, HTTPException, SerializationException, ValidationException
from litestar.openapi.spec import OpenAPIType, Schema
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from remotegpu.core.platform.errors import (
    AuthenticationError,
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    RemoteGPUError,
    UpstreamUnavailableError,
)
from remotegpu.core.platform.log_context import log_field
from remotegpu.core.platform.validation_messages import field_and_message
from remotegpu.core.secrets.store import SecretsAccessDeniedError, SecretsUnavailableError

PROBLEM_MEDIA_TYPE = "application/problem+json"
_log = logging.getLogger(__name__)
_BODY_STATE_KEY = "remotegpu_json_body"
"""Where `read_request_input` leaves the decoded body (`request.state`), for `validation_error`."""
NUL_MESSAGE = "must not contain the NUL character (\\u0000)"

_STATUS: list[tuple[type[RemoteGPUError], int, str]] = [
    (AuthenticationError, 401, "Not signed in"),
    (ForbiddenError, 403, "Not allowed"),
    (NotFoundError, 404, "Not found"),
    (ConflictError, 409, "Conflict"),
    (InvalidInputError, 422, "Invalid input"),
    (SecretsUnavailableError, 503, "Secrets store unavailable"),
    (SecretsAccessDeniedError, 503, "Secrets store unavailable"),
    (UpstreamUnavailableError, 503, "Upstream unavailable"),
]


def problem(
    status: int, title: str, detail: str, request: Request[Any, Any, Any], **extra: Any
) -> Response[dict[str, Any]]:
    """A problem response for `request`."""
    body = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    request_id = log_field("request_id")
    if request_id is not None:
        body["request_id"] = request_id
    body.update(extra)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return Response(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


_TEXT = Schema(type=OpenAPIType.STRING)

PROBLEM_SCHEMA = Schema(
    type=OpenAPIType.OBJECT,
    required=["type", "title", "status", "detail", "instance"],
    properties={
        "type": Schema(type=OpenAPIType.STRING, description="`about:blank`: the status says what went wrong"),
        "title": Schema(type=OpenAPIType.STRING, description="the kind of problem, e.g. `Invalid input`"),
        "status": Schema(type=OpenAPIType.INTEGER, description="the HTTP status, repeated"),
        "detail": Schema(type=OpenAPIType.STRING, description="what went wrong and how to fix it"),
        "instance": Schema(type=OpenAPIType.STRING, description="the path of the request"),
        "request_id": Schema(
            type=OpenAPIType.STRING,
            description="the request's id (also the `X-Request-ID` header): quote it when reporting a problem",
        ),
        "errors": Schema(
            type=OpenAPIType.ARRAY,
            description="each field at fault, when the input was refused",
            items=Schema(
                type=OpenAPIType.OBJECT,
                required=["field", "message"],
                properties={
                    "field": Schema(type=OpenAPIType.STRING, description="JSON path or parameter name"),
                    "message": _TEXT,
                    "source": Schema(type=OpenAPIType.STRING, description="body, query or path"),
                },
            ),
        ),
    },
    description="An RFC 9457 problem document, as `problem` writes it (every error answer of the API).",
)
"""The body of every error answer, for the OpenAPI document (`api.openapi`); it stays open to members
added later, as RFC 9457 allows."""


async def read_request_input(request: Request[Any, Any, Any]) -> None:
    """Refuse input no handler can use, before any handler reads it (see the module docstring)."""
    for name, value in request.query_params.multi_items():
        if "\x00" in name or "\x00" in value:
            raise InvalidInputError(name, NUL_MESSAGE)
    if request.route_handler.parsed_data_field is None or not await request.body():
        return
    try:
        data = await request.json()
    except RecursionError:
        raise ClientException("the body is not JSON this API can read: it nests too deeply") from None
    except SerializationException:
        return  # Litestar answers it as it always does (400, the body is not JSON)
    request.state[_BODY_STATE_KEY] = data
    path = _nul_path(data) if b"\\u0000" in await request.body() else None
    if path is not None:
        raise InvalidInputError(path, NUL_MESSAGE)


def _nul_path(data: Any) -> str | None:
    """The JSON path of the first string (or the mapping of the first key) holding a NUL character.

    Iterative: the document may nest as deeply as the decoder allowed."""
    pending: list[tuple[str, Any]] = [("$", data)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return path
        elif isinstance(value, dict):
            if any("\x00" in key for key in value):
                return path
            pending += reversed([(json_path(path, key), item) for key, item in value.items()])
        elif isinstance(value, list):
            pending += reversed([(f"{path}[{index}]", item) for index, item in enumerate(value)])
    return None


def json_path(parent: str, key: str) -> str:
    """`$.env.A` for a key that reads as a name, `$.env["a b"]` otherwise."""
    if key.isidentifier():
        return f"{parent}.{key}"
    return f"{parent}[{json.dumps(key)}]"


def remotegpu_error(request: Request[Any, Any, Any], error: RemoteGPUError) -> Response[dict[str, Any]]:
    """Our own errors: status from the class, message as the detail, the field when one is named."""
    for kind, status, title in _STATUS:
        if isinstance(error, kind):
            extra: dict[str, Any] = {}
            field = getattr(error, "field", None)
            if field:
                extra["errors"] = [{"field": field, "message": getattr(error, "detail", None) or str(error)}]
            return problem(status, title, str(error), request, **extra)
    return problem(400, "Bad request", str(error), request)


def validation_error(request: Request[Any, Any, Any], error: ValidationException) -> Response[dict[str, Any]]:
    """Litestar's parameter and body validation (msgspec): 422, with each field named as the body's JSON
    path (`$.resources.cpu`) or the parameter's name (`limit`), and its source (`body`, `query`, `path`)."""
    errors: list[dict[str, str]] = []
    for item in error.extra if isinstance(error.extra, list) else []:
        entry = item if isinstance(item, dict) else {"message": str(item)}
        source = entry.get("source")
        source = str(getattr(source, "value", source) or "")  # Litestar's ParamType is an enum
        key = entry.get("key")
        if source == "body":
            field, message = _body_error(request, str(entry.get("message", "")), key)
        else:
            field = str(key or "$")
            message = field_and_message(
                str(entry.get("message", "")),
                _parameter_type(request, field),
                from_text=source in ("query", "path", "header", "cookie"),
            )[1]
        errors.append({"field": field, "message": message, "source": source})
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or str(error.detail)
    return problem(422, "Invalid input", detail, request, errors=errors)


def _body_error(request: Request[Any, Any, Any], message: str, key: Any) -> tuple[str, str]:
    """Litestar keeps only part of msgspec's message (it drops "- at `key` in …"), so the body that
    `read_request_input` decoded is checked again against the handler's type for the whole of it."""
    root = getattr(request.route_handler.parsed_data_field, "annotation", None)
    data = request.state.get(_BODY_STATE_KEY)
    if root is not None and data is not None:
        try:
            msgspec.convert(data, root, strict=False, str_keys=True)
        except msgspec.ValidationError as full:
            return field_and_message(str(full), root, data)
        except (TypeError, ValueError):
            pass
    # Litestar moves a top-level field's path into `key` ("data" is the body itself).
    if "- at `" not in message and key and key != "data":
        message = f"{message} - at `$.{key}`"
    return field_and_message(message, root, data)


def _parameter_type(request: Request[Any, Any, Any], name: str) -> Any:
    """A query or path parameter's type as msgspec states it: `int` with its bounds, an enum, …"""
    parameter = request.route_handler.parsed_fn_signature.parameters.get(name)
    if parameter is None:
        return None
    bounds = {
        bound: value
        for bound in ("ge", "gt", "le", "lt")
        if (value := getattr(parameter.kwarg_definition, bound, None)) is not None
    }
    annotation = parameter.annotation
    return Annotated[annotation, msgspec.Meta(**bounds)] if bounds else annotation


def http_error(request: Request[Any, Any, Any], error: HTTPException) -> Response[dict[str, Any]]:
    """Litestar's HTTP errors (404 route, 405 method, 413 too large, 429 rate limited) as problems."""
    response = problem(error.status_code, _title(error.status_code), str(error.detail), request)
    for name, value in (error.headers or {}).items():
        response.headers[name] = value
    return response


def database_refused_value(
    request: Request[Any, Any, Any], error: DataError | psycopg.DataError
) -> Response[dict[str, Any]]:
    """Postgres refused a value the request carried (a NUL character in text, a cursor whose key does
    not parse, a number out of range): the caller's input, so 422 with Postgres's own reason."""
    cause = error.orig if isinstance(error, DataError) else error
    diagnostics = getattr(cause, "diag", None)
    reason = str(getattr(diagnostics, "message_primary", None) or str(cause).splitlines()[0])
    _log.warning("Database refused a request value", extra={"path": request.url.path, "reason": reason})
    return problem(
        422, "Invalid input", f"a value in the request cannot be stored or compared: {reason}", request
    )


DATABASE_RETRY_AFTER_SECONDS = 2


def database_unavailable(request: Request[Any, Any, Any], error: Exception) -> Response[dict[str, Any]]:
    """The database could not be reached, dropped the connection (a restart, a failover, a cut
    connection) or has no connection free: nothing the caller did, and a retry in a moment works, so
    503 with `Retry-After`."""
    _log.warning(
        "Database unavailable for a request",
        extra={"path": request.url.path, "error": type(getattr(error, "orig", None) or error).__name__},
    )
    response = problem(
        503,
        "Database unavailable",
        f"the database is not reachable right now; retry in {DATABASE_RETRY_AFTER_SECONDS} seconds",
        request,
    )
    response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
    return response


def internal_error(request: Request[Any, Any, Any], error: Exception) -> Response[dict[str, Any]]:
    """Anything unexpected: logged with its trace, answered without internals."""
    _log.exception("Request failed", extra={"path": request.url.path, "method": request.method})
    return problem(
        HTTP_500_INTERNAL_SERVER_ERROR,
        "Internal error",
        "the server failed; the operators have the details in the log",
        request,
    )


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


EXCEPTION_HANDLERS: dict[Any, Any] = {
    RemoteGPUError: remotegpu_error,
    ValidationException: validation_error,
    HTTPException: http_error,
    DataError: database_refused_value,
    psycopg.DataError: database_refused_value,
    OperationalError: database_unavailable,
    InterfaceError: database_unavailable,
    PoolTimeoutError: database_unavailable,
    psycopg.OperationalError: database_unavailable,
    Exception: internal_error,
}
"""Handlers for `Litestar(exception_handlers=…)`; the most specific class wins."""
