"""What every Harbor API v2.0 call shares: the base path, and lists read page by page.

Harbor lists take `page` (from 1) and `page_size` (at most 100) and answer `X-Total-Count` and a `Link`
header with `rel="prev"` and `rel="next"` targets (`src/server/v2.0/handler/base.go: Links`); the last
page has no `next`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import httpx

from remotegpu.core.registry.http import RegistryHttp, next_link

API = "/api/v2.0"
MAX_PAGE_SIZE = 100


def pages(
    http: RegistryHttp,
    path: str,
    params: Mapping[str, str],
    *,
    page_size: int = MAX_PAGE_SIZE,
    gone: tuple[int, ...] = (404,),
) -> Iterator[dict[str, Any]]:
    """Every item of a list under `API` (all pages, following `Link: <…>; rel="next"`)."""
    first = httpx.URL(
        f"{API}{path}", params={**params, "page": 1, "page_size": min(page_size, MAX_PAGE_SIZE)}
    )
    url: str | None = str(first)
    while url is not None:
        response = http.get(url, gone=gone)
        body = response.json()
        yield from (item for item in body if isinstance(item, dict)) if isinstance(body, list) else ()
        url = next_link(response)
