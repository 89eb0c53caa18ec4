"""Every error an operation can answer, in the OpenAPI document, each a problem document.

Litestar documents a handler's success answer and, for any handler with parameters, a 400 body of its
own `ValidationException` shape that this API never sends: validation errors are 422 problems
(`api.problems`). `document_error_answers` replaces every error answer of the document with what the API
really answers. Most statuses follow from an operation's shape, so a new route cannot forget them:

- 401 on every operation that needs credentials (all but those marked `public`);
- 404 on every operation with a path parameter (an id that does not exist or that the caller may not
  see; a malformed id does not match the route, which is a 404 too);
- 422 on every operation with query parameters or a body (validation, cursors, values Postgres refuses);
- 400 (the body is not JSON) and 413 (larger than `max_request_bytes`) on every operation with a body.

The rest depend on what the handler does and are declared on its decorator with `opt=answers(...)`:
403 for a role or platform-admin check, 404 for a lookup named by a query parameter or the body
(`?workspace=`), 409, 429 and 503. Error answers come from here only: `raises=` or `responses=` on a
handler would be overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Litestar
from litestar.openapi.spec import (
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    Reference,
    Schema,
)
from litestar.routes import HTTPRoute

from remotegpu.api.problems import PROBLEM_MEDIA_TYPE, PROBLEM_SCHEMA

PROBLEM_COMPONENT = "Problem"
_OPT_KEY = "error_answers"

_DESCRIPTIONS: dict[int, str] = {
    400: "The body is not JSON.",
    401: "Not signed in, or the credentials are wrong, expired or revoked.",
    403: "Signed in, but the caller's role does not allow this.",
    404: "Not found, or not visible to the caller.",
    409: "Conflicts with the current state (`detail` says which and what to do).",
    413: "The body is larger than the server accepts.",
    422: "Invalid input; `errors` names each field at fault.",
    429: "Too many attempts; `Retry-After` says when to try again.",
    503: "A service this needs does not answer; try again later.",
}
_HEADERS: dict[int, dict[str, OpenAPIHeader | Reference]] = {
    401: {"WWW-Authenticate": OpenAPIHeader(schema=Schema(type=OpenAPIType.STRING), description="`Bearer`")},
    429: {
        "Retry-After": OpenAPIHeader(
            schema=Schema(type=OpenAPIType.INTEGER),
            description="seconds until the next attempt may pass",
            required=True,
        )
    },
}


@dataclass(frozen=True)
class ErrorAnswers:
    """What a handler declares beyond what its shape implies."""

    statuses: frozenset[int] = frozenset()
    public: bool = False
    """Answered without credentials: no 401 unless declared, and no security requirement."""


def answers(*statuses: int, public: bool = False) -> dict[str, Any]:
    """`opt=` for a route handler: the error `statuses` its body can answer that its shape does not
    imply (see the module docstring), and whether it is `public`."""
    unknown = set(statuses) - _DESCRIPTIONS.keys()
    if unknown:
        raise ValueError(f"no description for status {sorted(unknown)}; add one to _DESCRIPTIONS")
    return {_OPT_KEY: ErrorAnswers(frozenset(statuses), public)}


def error_statuses(operation: Operation, declared: ErrorAnswers) -> set[int]:
    """The error statuses `operation` can answer: those its shape implies plus the `declared` ones."""
    located = {p.param_in for p in operation.parameters or [] if isinstance(p, Parameter)}
    has_body = operation.request_body is not None
    statuses = set(declared.statuses)
    if not declared.public:
        statuses.add(401)
    if "path" in located:
        statuses.add(404)
    if has_body or located - {"path"}:
        statuses.add(422)
    if has_body:
        statuses |= {400, 413}
    return statuses


def document_error_answers(app: Litestar) -> None:
    """Build `app`'s OpenAPI document now and give each operation its error answers, each a
    `Problem` (a named component). Litestar keeps the document it built, so the served one is this one
    (unless something calls `app.update_openapi_schema()`, which nothing here does)."""
    document = app.openapi_schema
    document.components.schemas = {**(document.components.schemas or {}), PROBLEM_COMPONENT: PROBLEM_SCHEMA}
    reference = Reference(f"#/components/schemas/{PROBLEM_COMPONENT}")
    problem = {PROBLEM_MEDIA_TYPE: OpenAPIMediaType(schema=reference)}
    for route in app.routes:
        item = (document.paths or {}).get(route.path_format or "/")
        if item is None or not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            declared: ErrorAnswers = handler.opt.get(_OPT_KEY, ErrorAnswers())
            for method in handler.http_methods:
                operation = getattr(item, method.lower(), None)
                if not isinstance(operation, Operation):
                    continue
                if declared.public:
                    operation.security = []
                kept = {
                    code: answer
                    for code, answer in (operation.responses or {}).items()
                    if not code.startswith(("4", "5"))
                }
                for status in sorted(error_statuses(operation, declared)):
                    kept[str(status)] = OpenAPIResponse(
                        description=_DESCRIPTIONS[status], content=problem, headers=_HEADERS.get(status)
                    )
                operation.responses = kept
