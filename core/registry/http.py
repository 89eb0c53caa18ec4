"""One registry's HTTP: timeouts, retries of temporary failures, and answers mapped to the interface's errors.

Both clients (OCI Distribution and Harbor) speak JSON over HTTP and answer errors in the same shape,
`{"errors": [{"code": …, "message": …}]}`, so they share this layer. A connection error, a timeout, a 5xx
or a 429 is temporary: the request is sent again after each of `retry_delays` (short, so a sync or a
pinning step is not held long; the caller backs off further), then `RegistryUnavailableError`. 401 and
403 are `RegistryAuthError` (the credentials are wrong or lack a permission: retrying does not help); 404
is `ReferenceGoneError`. Messages name the registry, the call and the registry's error code, never a
credential: credentials travel in `httpx.Auth`, never in a URL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

import httpx

from remotegpu.core.registry.client import ReferenceGoneError, RegistryAuthError, RegistryUnavailableError

log = logging.getLogger(__name__)

DEFAULT_RETRY_DELAYS: tuple[float, ...] = (0.2, 0.5, 1.0)
"""Seconds before each repeat of a temporarily failed request (three repeats, under 2 s in all)."""

_MESSAGE_LIMIT = 200


def error_codes(response: httpx.Response) -> str:
    """The registry's error codes and messages (`MANIFEST_UNKNOWN: manifest unknown`), shortened."""
    try:
        body = response.json()
    except ValueError:
        return ""
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return ""
    parts = [
        ": ".join(str(e[key]) for key in ("code", "message") if isinstance(e, dict) and e.get(key))
        for e in errors
    ]
    return "; ".join(p for p in parts if p)[:_MESSAGE_LIMIT]


class RegistryHttp:
    """An `httpx.Client` for one registry's base URL; thread-safe as httpx's client is."""

    def __init__(
        self,
        base_url: str,
        *,
        auth: httpx.Auth | None = None,
        timeout: float = 10.0,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        verify: bool | str = True,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.host = httpx.URL(self.base_url).netloc.decode()
        self._retry_delays = tuple(retry_delays)
        self._sleep = sleep
        self._client = httpx.Client(
            base_url=self.base_url,
            auth=auth,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            verify=verify,
            transport=transport,
            follow_redirects=False,
            headers={"User-Agent": "remotegpu-registry"},
        )

    def __repr__(self) -> str:
        return f"RegistryHttp({self.base_url!r})"

    def request(
        self,
        method: str,
        url: str,
        *,
        ok: Collection[int] = (200,),
        gone: Collection[int] = (404,),
        **kwargs: Any,
    ) -> httpx.Response:
        """The answer when its status is in `ok`; else the mapped error (after retries if temporary).

        `url` is a path under the base URL or an absolute URL the registry gave (a `Link` header)."""
        what = f"registry {self.host}: {method} {httpx.URL(url).path}"
        reason = "not attempted"
        for attempt in range(len(self._retry_delays) + 1):
            if attempt:
                self._sleep(self._retry_delays[attempt - 1])
            try:
                response = self._client.request(method, url, **kwargs)
            except httpx.TransportError as error:
                reason = f"{type(error).__name__}"
                log.info(
                    "Registry request failed", extra={"call": what, "reason": reason, "attempt": attempt}
                )
                continue
            if response.status_code in ok:
                return response
            reason = f"answered {response.status_code}"
            codes = error_codes(response)
            if codes:
                reason += f" ({codes})"
            if response.status_code == 429 or response.status_code >= 500:
                log.info(
                    "Registry request failed", extra={"call": what, "reason": reason, "attempt": attempt}
                )
                continue
            if response.status_code in (401, 403):
                raise RegistryAuthError(f"{what} {reason}: check the registry credentials")
            if response.status_code in gone:
                raise ReferenceGoneError(f"{what} {reason}")
            raise RegistryUnavailableError(f"{what} {reason}")
        raise RegistryUnavailableError(f"{what} {reason} (after {len(self._retry_delays) + 1} attempts)")

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def close(self) -> None:
        self._client.close()


def next_link(response: httpx.Response) -> str | None:
    """The `rel="next"` target of a `Link` header (RFC 8288), absolute against the request URL; None at
    the last page."""
    link = response.links.get("next")
    if not link or not link.get("url"):
        return None
    return str(response.request.url.join(link["url"]))
