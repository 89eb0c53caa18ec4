"""The HTTP plumbing of a fake Harbor: answers, Harbor's error bodies, its page/page_size pagination, and
the `http.server` handler.

Followed from goharbor/harbor v2.15.2: errors are `{"errors": [{"code", "message"}]}` with the codes of
`src/lib/errors/const.go` (`NOT_FOUND`, `UNAUTHORIZED`, `FORBIDDEN`, `BAD_REQUEST`, `CONFLICT`) and, for a
request the swagger's validation refuses, the status text (`UNPROCESSABLE_ENTITY`, 422;
`src/lib/http/error.go`). Lists take `page` (default 1) and `page_size` (default 10, at most 100) and
answer `X-Total-Count` and `Link: <path?…&page=N&page_size=M>; rel="prev" , <…>; rel="next"` with the
request's own path and query (`src/server/v2.0/handler/base.go: Links`, `src/lib/link.go`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

from remotegpu.ops.fakes.served import RoutedHandler

DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 100


class HarborError(Exception):
    """An error answer: its status, code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def not_found(message: str) -> HarborError:
    return HarborError(404, "NOT_FOUND", message)


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    @classmethod
    def json(cls, status: int, payload: Any, **headers: str) -> Reply:
        return cls(status, json.dumps(payload).encode(), headers)

    @classmethod
    def error(cls, error: HarborError) -> Reply:
        return cls.json(error.status, {"errors": [{"code": error.code, "message": error.message}]})


def page(items: Sequence[dict[str, Any]], path: str, query: str) -> Reply:
    """One page of `items` as Harbor answers a list: the page, `X-Total-Count` and `Link`."""
    params = dict(parse_qsl(query, keep_blank_values=True))
    number = _integer(params, "page", 1)
    size = _integer(params, "page_size", DEFAULT_PAGE_SIZE)
    if size > MAX_PAGE_SIZE:
        raise HarborError(
            422, "UNPROCESSABLE_ENTITY", f"page_size in query should be less than or equal to {MAX_PAGE_SIZE}"
        )
    total = len(items)
    links = []
    if number > 1 and (number - 1) * size < total:
        links.append(f'<{_link(path, params, number - 1, size)}>; rel="prev"')
    if size * number < total:
        links.append(f'<{_link(path, params, number + 1, size)}>; rel="next"')
    headers = {"X-Total-Count": str(total)}
    if links:
        headers["Link"] = " , ".join(links)
    return Reply.json(200, list(items[(number - 1) * size : number * size]), **headers)


def _link(path: str, params: dict[str, str], number: int, size: int) -> str:
    # Harbor sets page and page_size on the request's query, then unescapes the query again.
    return f"{path}?{unquote(urlencode({**params, 'page': number, 'page_size': size}))}"


def _integer(params: dict[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HarborError(422, "UNPROCESSABLE_ENTITY", f"{name} in query must be of type int64") from None
    if value < 1:
        raise HarborError(
            422, "UNPROCESSABLE_ENTITY", f"{name} in query should be greater than or equal to 1"
        )
    return value


class Handler(RoutedHandler):
    """Harbor's answers: every one names its content type."""
