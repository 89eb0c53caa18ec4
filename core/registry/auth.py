"""Registry credentials and how they are presented: answer the registry's `WWW-Authenticate` challenge.

A Distribution registry says how it wants to be authenticated in its 401's challenge: `Basic realm=…`
(htpasswd) or `Bearer realm=…,service=…,scope=…` (token auth, `core/registry/tokens.py`). The first
request goes out bare; once a registry has asked for Basic, later requests carry the credentials at once.
The password never leaves the `Authorization` header: not in a repr, a log line or an error.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Generator
from dataclasses import dataclass, field

import httpx

_PARAM = re.compile(r'([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


@dataclass(frozen=True)
class RegistryCredentials:
    """A user (or robot account) and its password or secret."""

    username: str
    password: str = field(repr=False)

    def basic(self) -> str:
        """The `Authorization` header value for HTTP Basic."""
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


@dataclass(frozen=True)
class Challenge:
    """One `WWW-Authenticate` challenge: its scheme (lower case) and parameters."""

    scheme: str
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge | None:
    """The challenge of a `WWW-Authenticate` header (registries send one); None if there is none."""
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    params = {
        m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
        for m in _PARAM.finditer(rest)
    }
    return Challenge(scheme.lower(), {k: v.replace('\\"', '"') for k, v in params.items()})


class ChallengeAuth(httpx.Auth):
    """`httpx.Auth` that answers a registry's Basic challenge (Bearer: see `TokenAuth`)."""

    def __init__(self, credentials: RegistryCredentials | None) -> None:
        self._credentials = credentials
        self._basic = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._credentials!r})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._basic and self._credentials is not None:
            request.headers["Authorization"] = self._credentials.basic()
            yield request
            return
        response = yield request
        challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        if response.status_code != 401 or challenge is None or self._credentials is None:
            return
        if challenge.scheme == "basic":
            self._basic = True
            request.headers["Authorization"] = self._credentials.basic()
            yield request
